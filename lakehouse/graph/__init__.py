"""What the asset graph shares: layer defaults, GPU routing, partitions, executors."""

import warnings

import dagster as dg

# We use Dagster's observable sources, single-run backfills and partitioned data
# versions on purpose; their "beta" notices would drown every command's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
