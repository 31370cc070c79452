"""Materialization runs forked from a warmed-up `forkserver`, for tests that kill them.

A fresh interpreter per run would spend seconds importing Dagster and torch and
setting up a Dagster instance; the forkserver imports this module once (which
does that work, touching neither deltalake nor a thread pool, so forking stays
safe) and forks each run from it. Only the forkserver imports this module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import dagster as dg

from lakehouse.definitions import build_definitions
from lakehouse.failpoints import CRASH_VAR
from lakehouse.graph.partitions import partition_range_tags

SOURCES = ("photo_objects", "metadata_db", "activity_logs")
RAW = frozenset(
    {"raw_objects", "raw_users", "raw_photos", "raw_photo_labels", "raw_events", "quarantine"}
)
IMAGES = frozenset({"images", "augmented_tensors"})
MODELS = frozenset({"style_content_classifier", "photo_classes"})
FEATURES = frozenset(
    {"user_activity", "photo_features", "popularity_labels", "training_set", "popularity_model"}
)
STAGES = {"raw": RAW, "images": IMAGES, "models": MODELS, "features": FEATURES}
# a short training keeps every run cheap; the reference trains the same way
RUN_CONFIG = {"ops": {"style_content_classifier": {"config": {"epochs": 2}}}}


def materialize(
    sources: str,
    lake: str,
    stage: str,
    days: tuple[str, str],
    crash_at: str,
    out: str,
) -> None:
    """One run of a stage's assets over a range of log days, in this (forked) process.

    The data version of each materialized asset goes to `out`/versions.json and
    Dagster's log to `out`/run.log, with the lake's own log lines (a commit conflict
    retried) and the line of the failpoint that killed the run; the exit code says
    whether the run succeeded.
    """
    log = os.open(Path(out) / "run.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    lake_log = logging.getLogger("lakehouse.lake")
    lake_log.addHandler(logging.StreamHandler(sys.stderr))
    lake_log.setLevel(logging.INFO)
    os.environ.pop(CRASH_VAR, None)
    if crash_at:
        os.environ[CRASH_VAR] = crash_at
    defs = build_definitions(
        lake=lake, sources=sources, metadata_db=f"sqlite:///{Path(sources) / 'metadata.db'}"
    )
    keys = {
        key
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if key.path[0] not in SOURCES and key.path[0] in STAGES[stage]
    }
    result = (
        defs.resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection=keys)
        .execute_in_process(
            run_config=RUN_CONFIG if stage == "models" else None,
            instance=dg.DagsterInstance.ephemeral(),
            tags=partition_range_tags(days[0], days[1]),
            raise_on_error=False,
        )
    )
    versions = {
        event.asset_key.to_user_string(): event.event_specific_data.materialization.tags.get(
            "dagster/data_version"
        )
        for event in result.get_asset_materialization_events()
    }
    (Path(out) / "versions.json").write_text(json.dumps(versions, sort_keys=True))
    os._exit(0 if result.success else 1)


# the first ephemeral instance pays for lazy imports and schema setup; forks inherit that
dg.DagsterInstance.ephemeral()
