"""What every asset of a layer declares alike: group, owner, backfills, automation, GPU routing."""

import dagster as dg

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


def layer_defaults(group_name: str, owner: str, **extra: object) -> dict[str, object]:
    """Keyword arguments shared by the `@asset`s of one layer.

    Single-run backfills let `dagster asset materialize --partition-range` cover
    the whole graph in one run; eager automation lets a source observation that
    changed content flow on in a running `dagster dev`; the retry policy rides out
    storage outages of a few seconds (1, 2, 4 s apart).
    """
    return dict(
        group_name=group_name,
        owners=[owner],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.eager(),
        retry_policy=STORAGE_RETRY,
        **extra,
    )
