"""Partitions shared by the assets that follow the daily activity logs."""

import dagster as dg

from lakehouse.settings import logs_start

log_days = dg.DailyPartitionsDefinition(start_date=logs_start(), timezone="UTC")
