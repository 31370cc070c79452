"""Partitions shared by the assets that follow the daily activity logs."""

import dagster as dg

from lakehouse.settings import logs_start

log_days = dg.DailyPartitionsDefinition(start_date=logs_start(), timezone="UTC")


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags `--partition-range first...last` sets: one run over a range of days, for
    runs launched in-process (Dagster has no public constant for these tags, and
    execute_in_process no range argument)."""
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }
