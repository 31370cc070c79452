"""How runs execute: in one process on one machine; in the production profile on Celery
queues (`cpu`, `gpu`) or one pod per step."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from lakehouse.errors import ConfigError
from lakehouse.settings import (
    CELERY_BROKER_VAR,
    PROJECT_ROOT,
    is_production,
    require_production_settings,
)

CELERY_CONFIG = PROJECT_ROOT / "deploy" / "production" / "celery.yaml"
EXECUTOR_VAR = "LAKEHOUSE_EXECUTOR"
EXECUTORS = ("celery", "k8s")


def celery_config(path: Path = CELERY_CONFIG) -> dict:
    """The executor config the workers also read (`execution.config` of `celery.yaml`)."""
    return yaml.safe_load(path.read_text())["execution"]["config"]


def local_executor() -> dg.ExecutorDefinition:
    """Dagster's default executor, in-process unless a run's config says `multiprocess`.

    On one machine every step in one process: no interpreter start-up (torch, polars,
    deltalake imports) per step, no two CPU-hungry steps fighting over the cores. Runs
    that the UI, schedules and the automation launch take no run config, so the default
    matters; `{"execution": {"config": {"multiprocess": {}}}}` still picks subprocesses.
    """
    return dg.multi_or_in_process_executor.configured(
        lambda config: config or {"in_process": {}},
        config_schema=dg.Field(dg.Permissive(), is_required=False, default_value={}),
    )


def default_executor() -> dg.ExecutorDefinition:
    """Production: Celery (the default) or Kubernetes jobs; elsewhere in-process steps.

    Both honour the same tags on the GPU assets: `dagster-celery/queue: gpu` and
    `dagster-k8s/config` asking for `nvidia.com/gpu: 1`.
    """
    if not is_production():
        return local_executor()
    kind = os.environ.get(EXECUTOR_VAR) or "celery"
    if kind not in EXECUTORS:
        raise ConfigError(f"{EXECUTOR_VAR}={kind!r}: expected one of {', '.join(EXECUTORS)}")
    if kind == "k8s":
        require_production_settings()
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    require_production_settings(CELERY_BROKER_VAR)
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(), name="celery")
