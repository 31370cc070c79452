"""Schedules, all on by default: source observations every 15 minutes, the nightly runs."""

import dagster as dg

from lakehouse.automation.jobs import backfill_logs, nightly_training, observe_logs, observe_sources
from lakehouse.graph.defaults import NIGHTLY_CRON

observe_sources_schedule = dg.ScheduleDefinition(
    job=observe_sources,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
observe_logs_schedule = dg.ScheduleDefinition(
    job=observe_logs,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
nightly_logs_schedule = dg.build_schedule_from_partitioned_job(
    backfill_logs,
    name="nightly_logs",
    hour_of_day=1,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
nightly_schedule = dg.ScheduleDefinition(
    name="nightly_training_0200_utc",
    job=nightly_training,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
