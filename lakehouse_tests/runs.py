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


def run_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What failed in a run kept by `instance`, step by step."""
    return failures(
        entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event
    )


def runs_succeeded(instance: dg.DagsterInstance, runs: list[dg.DagsterRun], context: str) -> None:
    """Fail naming each run that did not succeed, its failing steps and their errors."""
    failed = [run for run in runs if run.status != dg.DagsterRunStatus.SUCCESS]
    if failed:
        pytest.fail(
            "\n\n".join(
                f"run {run.run_id} ({run.job_name}, {run.tags.get('dagster/partition', 'all')})"
                f" {run.status.value}:\n"
                + ("\n".join(run_failures(instance, run.run_id)) or "(no step failed)")
                for run in failed
            )
            + f"\n\n{context}",
            pytrace=False,
        )
