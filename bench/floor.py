"""Dagster's own floor under a rerun: the lakehouse graph with every body a no-op.

    .venv/bin/python -m bench.floor --first DAY --last DAY --report FILE.json [--repeats R]

The twin has the real graph's shape, read from its definitions: the same asset keys,
dependencies, partitions and backfill policies, the same asset checks and the same
observable sources (and the `observe_all` job over them). Each body does nothing: an
asset reports a constant data version, a check passes, an observation reports an
unchanged version. The twin is run as `bench.pipeline dagster` runs the real graph
(observe, then materialize every asset over [first, last] in one run, on an instance
opened before the clock starts): once, then `repeats` times again. What a rerun of the
twin costs is what Dagster alone costs a no-change rerun of this graph on this machine
(its run, its steps and its event log), whatever our code does; the bench reports it
beside the real no-change rerun.
"""

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg

from bench.pipeline import OBSERVE_JOBS, dagster_run, instance_for


def twin(defs: dg.Definitions) -> dg.Definitions:
    """`defs`' graph with no-op bodies: same keys, deps, partitions, backfill policies,
    checks and observable sources, and the observation jobs over those sources."""
    graph = defs.resolve_asset_graph()
    assets: list[dg.AssetsDefinition | dg.SourceAsset] = []
    observed: list[dg.AssetKey] = []
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        if node.is_observable and not node.is_materializable:
            assets.append(observation(key, node.partitions_def))
            observed.append(key)
        elif node.is_materializable:
            assets.append(
                dg.asset(
                    key=key,
                    deps=sorted(node.parent_keys),
                    partitions_def=node.partitions_def,
                    backfill_policy=node.backfill_policy,
                    code_version="1",
                )(materialization)
            )
    checks = [
        dg.asset_check(asset=check.asset_key, name=check.name)(passing)
        for check in sorted(graph.asset_check_keys)
    ]
    jobs = [
        dg.define_asset_job(name, selection=dg.AssetSelection.assets(*observed))
        for name in OBSERVE_JOBS
    ]
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs)


def materialization(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("unchanged"))


def passing() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def observation(key: dg.AssetKey, partitions: dg.PartitionsDefinition | None) -> dg.SourceAsset:
    """An observable source that reports no change (a partitioned one, no partition)."""

    def observe(context: dg.OpExecutionContext) -> dg.DataVersion | dg.DataVersionsByPartition:
        return dg.DataVersionsByPartition({}) if partitions else dg.DataVersion("unchanged")

    return dg.observable_source_asset(key=key, partitions_def=partitions)(observe)


def run_twin(defs: dg.Definitions, first: str, last: str, instance: dg.DagsterInstance) -> float:
    """Observe, then materialize every asset of the twin over [first, last], as
    bench.pipeline runs the real graph (its own `dagster_run`); seconds."""
    start = time.perf_counter()
    dagster_run(defs, first, last, {}, instance)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3, help="reruns after the first run")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real definitions' beta warnings
        from lakehouse.definitions import build_definitions

        with tempfile.TemporaryDirectory() as nowhere:
            # the real graph's shape only: its resources are never used
            real = build_definitions(
                lake=f"{nowhere}/lake",
                sources=f"{nowhere}/sources",
                metadata_db=f"sqlite:///{nowhere}/metadata.db",
            )
            defs = twin(real)
            instance = instance_for(Path(nowhere) / "twin")
            first = run_twin(defs, args.first, args.last, instance)
            reruns = [run_twin(defs, args.first, args.last, instance) for _ in range(args.repeats)]
            counts = {
                "assets": len(defs.resolve_asset_graph().materializable_asset_keys),
                "checks": len(defs.resolve_asset_graph().asset_check_keys),
            }
    args.report.write_text(json.dumps({"first": first, "reruns": reruns, **counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
