"""How runs execute in the production profile: Dagster's Celery executor with `cpu`/`gpu` queues."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from lakehouse.settings import PROJECT_ROOT, is_production, require_production_settings

CELERY_CONFIG = PROJECT_ROOT / "deploy" / "production" / "celery.yaml"


def celery_config(path: Path = CELERY_CONFIG) -> dict:
    """The executor config the workers also read (`execution.config` of `celery.yaml`)."""
    return yaml.safe_load(path.read_text())["execution"]["config"]


def default_executor() -> dg.ExecutorDefinition | None:
    """Celery in production (settings checked first); Dagster's default executor otherwise."""
    if not is_production():
        return None
    require_production_settings()
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(), name="celery")
