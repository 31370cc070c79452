"""lakehouse: a Dagster asset-graph data lakehouse for ML training data."""

import warnings

# We use Dagster's observable sources, single-run backfills and partitioned data
# versions on purpose; their "beta" notices would drown every command's output.
# Matched by message, so that importing the package does not import Dagster
# (spawned DataLoader workers import lakehouse.curated.augment and nothing more).
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
