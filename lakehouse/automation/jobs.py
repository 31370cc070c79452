"""Jobs: named selections of assets that run together (observations, log backfills, nightly)."""

import dagster as dg

from lakehouse.graph.partitions import log_days

SOURCES = dg.AssetSelection.keys(
    "photo_objects", "metadata_db", "activity_logs", "activity_log_days"
)

observe_all = dg.define_asset_job(
    "observe_all",
    selection=SOURCES,
    description="Observe every source in one run: the photo store, the metadata database and "
    "the daily log files (what `make materialize` runs before materializing).",
    executor_def=dg.in_process_executor,
)
observe_sources = dg.define_asset_job(
    "observe_sources",
    selection=dg.AssetSelection.keys("photo_objects", "metadata_db"),
    description="Observe the photo store and the metadata database: content versions.",
    # Observations are light: a subprocess per step costs more than the work (52 s for a no-op).
    executor_def=dg.in_process_executor,
)
observe_logs = dg.define_asset_job(
    "observe_logs",
    selection=dg.AssetSelection.keys("activity_logs", "activity_log_days"),
    description="Observe the daily activity-log files: one content version per day, and one "
    "over all days (what the unpartitioned readers of every day depend on).",
    executor_def=dg.in_process_executor,
)
backfill_logs = dg.define_asset_job(
    "backfill_logs",
    selection=["raw_events", "user_activity"],
    partitions_def=log_days,
    description="Parse and aggregate a range of log days (e.g. --partition-range a...b).",
)
nightly_training = dg.define_asset_job(
    "nightly_training",
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.assets("raw_events", "user_activity")
    - SOURCES,
    description="Everything unpartitioned downstream of the sources; each asset skips "
    "unchanged content, so only what is stale does work.",
)
