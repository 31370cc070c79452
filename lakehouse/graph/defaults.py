"""What every asset of a layer declares alike: group, owner, backfills, automation, GPU routing."""

from datetime import timedelta

import dagster as dg

from lakehouse.graph.partitions import ALL_DAYS_DIGEST, DAILY_ASSETS, log_days

AC = dg.AutomationCondition

# The nightly training run (automation.schedules) and how late it may finish.
NIGHTLY_HOUR_UTC = 2
NIGHTLY_CRON = f"0 {NIGHTLY_HOUR_UTC} * * *"
NIGHTLY_GRACE = timedelta(hours=2)

GPU = dict(
    pool="gpu",
    op_tags={
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
        },
        "dagster-celery/queue": "gpu",
    },
)


# Transient storage faults (an object store that stops answering for a while) are
# retried: every step is idempotent, so a retry redoes only what was not committed.
# Errors a retry cannot fix raise a PermanentError and fail at once.
STORAGE_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)


def flows_on(daily: bool = False) -> dg.AutomationCondition:
    """Dagster's `eager()`, widened to every partition and held back by failing checks.

    - a dependency that changed content (a new data version, also of an old log day)
      requests the partitions it feeds, not only the latest one; missing partitions are
      filled only in the latest window (as `eager()`), so a deployment never backfills
      history by itself;
    - the digest over all log days only shows staleness: the readers of every day run
      once the changed day's partition has materialized, not as soon as the files moved;
    - a log day without a file is a missing partition of the daily assets, not missing
      input: an unpartitioned asset that reads every day still runs;
    - an unpartitioned asset waits while a log day it reads is requested: a daily
      partition and an unpartitioned reader cannot share a run, and running the reader
      first would run it twice (a `daily` asset runs with the same day of its parent);
    - while a blocking check of a dependency fails, nothing is requested (the automation
      tab of the asset says which check);
    - a failed run is not retried until a dependency changes again (`since_last_handled`):
      no tight loop against a source that does not answer.
    """
    waits_for_days = ~AC.any_deps_match(AC.will_be_requested()).allow(
        dg.AssetSelection.assets(*DAILY_ASSETS)
    ).with_label("a log day it reads is requested now")
    condition = (
        (
            (AC.in_latest_time_window() & AC.newly_missing())
            | AC.any_deps_updated().ignore(dg.AssetSelection.assets(ALL_DAYS_DIGEST))
        )
        .since_last_handled()
        .with_label("dependency changed (any partition) or newly missing (latest)")
        & ~AC.any_deps_missing().ignore(dg.AssetSelection.assets(*DAILY_ASSETS))
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    )
    return (condition if daily else condition & waits_for_days).with_label("flows_on")


def check_follows() -> dg.AutomationCondition:
    """Checks run with (or right after) each automated materialization of their asset."""
    return (
        AC.any_deps_updated().since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
    ).with_label("check_follows")


def nightly_freshness() -> dg.FreshnessPolicy:
    """Expected every night: materialized between 02:00 UTC and 02:00 plus the grace period,
    else the UI marks the asset late (fail) until it materializes again."""
    deadline_hour = NIGHTLY_HOUR_UTC + int(NIGHTLY_GRACE / timedelta(hours=1))
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"0 {deadline_hour} * * *", lower_bound_delta=NIGHTLY_GRACE, timezone="UTC"
    )


def layer_defaults(
    group_name: str, owner: str, daily: bool = False, **extra: object
) -> dict[str, object]:
    """Keyword arguments shared by the `@asset`s of one layer.

    Single-run backfills let `dagster asset materialize --partition-range` cover
    the whole graph in one run; automation (`flows_on`) lets a source observation that
    changed content flow on in a running `dagster dev`; the retry policy rides out
    storage outages of a few seconds (waits of 1, 3 and 7 s after the failed attempts).
    `daily`: the asset is partitioned by log day (`graph.partitions.log_days`).
    """
    return dict(
        group_name=group_name,
        owners=[owner],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=flows_on(daily),
        retry_policy=STORAGE_RETRY,
        **({"partitions_def": log_days} if daily else {}),
        **extra,
    )
