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


def layer_defaults(group_name: str, owner: str, **extra: object) -> dict[str, object]:
    """Keyword arguments shared by the `@asset`s of one layer.

    Single-run backfills let `dagster asset materialize --partition-range` cover
    the whole graph in one run; eager automation lets a source observation that
    changed content flow on in a running `dagster dev`.
    """
    return dict(
        group_name=group_name,
        owners=[owner],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.eager(),
        **extra,
    )
