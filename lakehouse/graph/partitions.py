"""Partitions shared by the assets that follow the daily activity logs."""

from datetime import date, timedelta

import dagster as dg

from lakehouse.settings import logs_end, logs_start


def _end_date(last: str | None) -> str | None:
    """Dagster's end_date is the first day without a partition: the day after the last."""
    return None if last is None else (date.fromisoformat(last) + timedelta(days=1)).isoformat()


# Open-ended (a partition a day up to today) unless LAKEHOUSE_LOGS_END names the last day.
log_days = dg.DailyPartitionsDefinition(
    start_date=logs_start(), end_date=_end_date(logs_end()), timezone="UTC"
)
# The assets partitioned by log day (the observed files and what is parsed from them).
DAILY_ASSETS = ("activity_logs", "raw_events", "user_activity")
# The observed digest over all log days: what shows an unpartitioned reader of every day
# stale (Dagster does not carry a day's data version to an unpartitioned child).
ALL_DAYS_DIGEST = "activity_log_days"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags `--partition-range first...last` sets: one run over a range of days, for
    runs launched in-process (Dagster has no public constant for these tags, and
    execute_in_process no range argument)."""
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }
