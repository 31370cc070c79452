"""lakehouse: a Dagster asset-graph data lakehouse for ML training data."""
