"""lakehouse: a Dagster asset-graph data lakehouse for ML training data."""

import warnings

from dagster import BetaWarning, PreviewWarning

# We use Dagster's observable sources, single-run backfills and partitioned data
# versions on purpose; their "beta" notices would drown every command's output.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
