"""Assertions over Dagster runs that say what failed: the run, each failed step and its
error, never a bare `assert False` (one home for the suite's run checks)."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import pytest

TAIL = 3000  # the end of an error says most; a whole traceback drowns the report


def failures(events: Iterable[dg.DagsterEvent]) -> list[str]:
    """Each failure among `events`: the step (or the run) and its error's text."""
    found = []
    for event in events:
        if not (event.is_step_failure or event.is_failure):
            continue
        error = getattr(event.event_specific_data, "error", None)
        text = error.to_string() if error is not None else event.message or event.event_type_value
        found.append(f"{event.step_key or 'run'}: {text}"[-TAIL:])
    return found


def succeeded(result: dg.ExecuteInProcessResult, what: str) -> None:
    """Fail naming the run of `what`, each failed step and its error."""
    if not result.success:
        pytest.fail(
            f"{what}: run {result.run_id} failed:\n"
            + ("\n".join(failures(result.all_events)) or "(no step failed)"),
            pytrace=False,
        )


ENGINE_TAIL = 3  # what the engine said last: why a run failed that no step explains


def run_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What failed in a run kept by `instance`, step by step; when no step failed (a run
    failed from outside, a killed run worker), the engine's last words and their errors."""
    events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event]
    found = failures(events)
    if not any(event.is_step_failure for event in events):
        for event in [e for e in events if e.is_engine_event][-ENGINE_TAIL:]:
            error = event.engine_event_data.error
            found.append(f"engine: {event.message}" + (f"\n{error.to_string()}" if error else ""))
    return [text[-TAIL:] for text in found]


ORIGIN_TAGS = (
    "dagster/partition",
    "dagster/backfill",
    "dagster/sensor_name",
    "dagster/schedule_name",
)


def origin(run: dg.DagsterRun) -> str:
    """The run's job and what launched it (partition, backfill, sensor, schedule)."""
    tags = [f"{key.split('/')[1]}={run.tags[key]}" for key in ORIGIN_TAGS if key in run.tags]
    return ", ".join([run.job_name, *tags])


def runs_succeeded(instance: dg.DagsterInstance, runs: list[dg.DagsterRun], context: str) -> None:
    """Fail naming each run that did not succeed, its failing steps and their errors."""
    failed = [run for run in runs if run.status != dg.DagsterRunStatus.SUCCESS]
    if failed:
        pytest.fail(
            "\n\n".join(
                f"run {run.run_id} ({origin(run)})"
                f" {run.status.value}:\n"
                + ("\n".join(run_failures(instance, run.run_id)) or "(no step failed)")
                for run in failed
            )
            + f"\n\n{context}",
            pytrace=False,
        )
