"""One whole lakehouse run over a world: through Dagster, or the same functions in a plain script.

    .venv/bin/python -m bench.pipeline {dagster|plain} --sources DIR --lake DIR --first DAY
        --last DAY --report FILE.json

`dagster` does what `make materialize` does: run the observe_all job, then
materialize every asset (checks included) over the day range in one in-process
run, on a Dagster instance kept beside the lake (a rerun finds the earlier runs,
as with the UI left running). `plain` calls the very same observation,
asset and check functions in topological order with hand-built contexts and no
run, event log or executor around them. Both write {seconds, rows_computed},
step_seconds and step_spans to the report: the wall time after imports (and, for
`dagster`, after opening the instance), what each asset
said it computed, how long each asset (with its checks, in the plain script) took, and
when (unix start and end) each step ran.
The parent (bench/__main__.py) runs this in a subprocess so that it can watch
the memory of the whole process tree, loader workers included; it starts it with
`python -c` rather than `-m`, since spawned workers import the main module (this
one imports Dagster and every asset; Dagster's CLI, what `make materialize` runs,
is far lighter).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
import typing
from pathlib import Path

import dagster as dg

from lakehouse.definitions import build_definitions
from lakehouse.graph.partitions import partition_range_tags

# INFO: what each asset logs (its progress) shows while the run goes; the event chatter does not
RUN_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
OBSERVE_JOBS = ("observe_all",)


def definitions(sources: Path, lake: Path) -> dg.Definitions:
    return build_definitions(
        lake=str(lake), sources=str(sources), metadata_db=f"sqlite:///{sources / 'metadata.db'}"
    )


def step_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Wall seconds of each step of the run (one step per asset)."""
    return {
        event.step_key: event.event_specific_data.duration_ms / 1000  # type: ignore[union-attr]
        for event in result.get_step_success_events()
    }


def rows_computed(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """What each materialized asset reported in its `rows_computed` metadata."""
    found = {}
    for event in result.get_asset_materialization_events():
        metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
        if "rows_computed" in metadata:
            found[event.asset_key.to_user_string()] = int(metadata["rows_computed"].value)
    return found


Configs = dict[str, dict[str, object]]


Report = tuple[dict[str, int], dict[str, float], dict[str, tuple[float, float]]]


def step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Unix start and end time of each step of a run, from its event log: the parent lays
    them over its memory samples to say which step held the peak."""
    spans: dict[str, list[float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            spans[event.step_key] = [entry.timestamp, entry.timestamp]
        elif event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            spans.setdefault(event.step_key, [entry.timestamp, entry.timestamp])[1] = (
                entry.timestamp
            )
    return {step: (began, ended) for step, (began, ended) in spans.items()}


def instance_for(lake: Path) -> dg.DagsterInstance:
    """The Dagster instance kept beside the lake: a rerun over the same lake finds its
    earlier runs, as with the UI left running (an ephemeral instance would forget them,
    and every rerun would redraw what only a first materialization needs to show)."""
    home = lake.parent / f"{lake.name}.dagster"
    home.mkdir(parents=True, exist_ok=True)
    # no telemetry: it would write beside $DAGSTER_HOME (the checkout, under make)
    return dg.DagsterInstance.local_temp(
        tempdir=str(home), overrides={"telemetry": {"enabled": False}}
    )


def dagster_run(
    defs: dg.Definitions,
    first: str,
    last: str,
    configs: Configs,
    instance: dg.DagsterInstance,
) -> tuple[dict[str, int], dict[str, float], str]:
    """Observe the sources, then materialize every asset over [first, last] in one run,
    on `instance`; rows computed, step seconds and the run's id."""
    for name in OBSERVE_JOBS:
        observed = defs.resolve_job_def(name).execute_in_process(
            instance=instance, run_config=RUN_LOGS
        )
        if not observed.success:
            raise RuntimeError(f"{name} failed")
    graph = defs.resolve_asset_graph()
    keys = {key for key in graph.materializable_asset_keys}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=keys)
    ops = {name: {"config": config} for name, config in configs.items()}
    result = job.execute_in_process(
        instance=instance,
        run_config={**RUN_LOGS, "ops": ops},
        tags=partition_range_tags(first, last),
    )
    if not result.success:
        raise RuntimeError("materialization failed")
    return rows_computed(result), step_seconds(result), result.run_id


def call_directly(
    definition: dg.AssetsDefinition | dg.AssetChecksDefinition,
    resources: dict[str, object],
    context: dg.AssetExecutionContext | None,
    config: dict[str, object],
) -> object:
    """Invoke a definition as a function, with its default config; resources come from the
    context (assets) or as arguments (checks, which take no context)."""
    fn = definition.op.compute_fn.decorated_fn  # type: ignore[union-attr]
    kwargs: dict[str, object] = {}
    hints = typing.get_type_hints(fn)  # resolves annotations written as strings too
    for name in inspect.signature(fn).parameters:
        if name == "context":
            kwargs[name] = context
        elif name in resources and context is None:
            kwargs[name] = resources[name]
        elif name == "config":
            kwargs[name] = hints[name](**config)
    return definition(**kwargs)


def plain_run(defs: dg.Definitions, first: str, last: str, configs: Configs) -> Report:
    """The same observations, assets and checks, called in dependency order without a run."""
    graph = defs.resolve_asset_graph()
    resources = dict(defs.resources or {})
    days = dg.PartitionKeyRange(first, last)
    found: dict[str, int] = {}
    seconds: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for key in graph.toposorted_asset_keys:
        began, wall = time.perf_counter(), time.time()
        assets_def = defs.get_assets_def(key)
        partitioned = assets_def.partitions_def is not None
        context = dg.build_asset_context(
            resources=resources, partition_key_range=days if partitioned else None
        )
        config = configs.get(key.to_user_string(), {})
        result = call_directly(assets_def, resources, context, config)
        metadata = getattr(result, "metadata", None) or {}
        if "rows_computed" in metadata:
            found[key.to_user_string()] = int(metadata["rows_computed"])
        for check in checks_of(defs, key):
            outcome = call_directly(check, resources, None, {})
            blocking = any(spec.blocking for spec in check.check_specs)
            if blocking and isinstance(outcome, dg.AssetCheckResult) and not outcome.passed:
                raise RuntimeError(f"blocking check failed: {outcome}")
        seconds[key.to_user_string()] = time.perf_counter() - began
        spans[key.to_user_string()] = (wall, time.time())
    return found, seconds, spans


def checks_of(defs: dg.Definitions, key: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    return [
        check
        for check in defs.asset_checks or []
        if any(spec.asset_key == key for spec in check.check_specs)  # type: ignore[union-attr]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("dagster", "plain"))
    parser.add_argument("--sources", type=Path, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument(
        "--config", type=json.loads, default={}, help='JSON {"asset": {config}}, both modes'
    )
    args = parser.parse_args()
    defs = definitions(args.sources, args.lake)
    if args.mode == "dagster":
        # the instance (its storage opened and schema checked, ~0.6 s) is the deployment's,
        # made before its runs like the imports; the step spans are read after the timing
        instance = instance_for(args.lake)
        start = time.perf_counter()
        computed, steps, run_id = dagster_run(defs, args.first, args.last, args.config, instance)
        seconds = time.perf_counter() - start
        spans = step_spans(instance, run_id)
    else:
        start = time.perf_counter()
        computed, steps, spans = plain_run(defs, args.first, args.last, args.config)
        seconds = time.perf_counter() - start
    report = {
        "seconds": seconds,
        "rows_computed": computed,
        "step_seconds": steps,
        "step_spans": spans,
    }
    args.report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
