"""After a successful nightly run, a named release of the whole lake."""

from datetime import UTC, datetime

import dagster as dg

from lakehouse.access.releases import ReleaseExists, create_release
from lakehouse.automation.jobs import nightly_training
from lakehouse.lake import LakeResource

SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"


def nightly_release_name(tags: dict[str, str], now: datetime) -> str:
    """`nightly-YYYY-MM-DD`, the UTC day the run was scheduled for (else today)."""
    scheduled = tags.get(SCHEDULED_TIME_TAG)
    moment = datetime.fromisoformat(scheduled) if scheduled else now
    return f"nightly-{moment.astimezone(UTC).date().isoformat()}"


@dg.run_status_sensor(
    name="nightly_release",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[nightly_training],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When nightly_training succeeds (popularity_model materialized in that run), "
    "record every table's Delta version as release nightly-YYYY-MM-DD.",
)
def nightly_release(context: dg.RunStatusSensorContext, lake: LakeResource) -> dg.SkipReason:
    run = context.dagster_run
    model = context.instance.get_latest_materialization_event(dg.AssetKey("popularity_model"))
    if model is None or model.run_id != run.run_id:
        return dg.SkipReason(f"run {run.run_id} did not materialize popularity_model")
    name = nightly_release_name(dict(run.tags), datetime.now(UTC))
    try:
        release = create_release(lake, name, commit_info={"dagster_run_id": run.run_id})
    except ReleaseExists:
        return dg.SkipReason(f"release {name} exists already (an earlier run that day)")
    context.log.info(f"release {name}: {len(release.versions)} tables")
    return dg.SkipReason(f"created release {name} ({len(release.versions)} tables)")
