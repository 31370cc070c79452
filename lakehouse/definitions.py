"""The single Definitions object: every asset, check, job, schedule, sensor and resource.

Each layer folder (and `automation/`) is loaded whole: a new asset, check, job,
schedule or sensor defined at module level in one of them is picked up without
an edit here. `dg` and `dagster -m lakehouse.definitions` both load `defs`.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from lakehouse import automation, curated, features, labels, models, raw, sources
from lakehouse.errors import ConfigError
from lakehouse.graph.executors import default_executor
from lakehouse.lake import LakeResource
from lakehouse.lake.sql import MEMORY_LIMIT_VAR, THREADS_VAR, connection_config
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.resources.device import DEVICE_VAR, DeviceResource
from lakehouse.settings import (
    LAKE_VAR,
    METADATA_DB_VAR,
    SOURCES_VAR,
    lake_uri,
    metadata_db_url,
    sources_uri,
)

DEFINING_PACKAGES = (sources, raw, curated, features, models, labels, automation)


def setting(var: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (its value, maybe a secret, stays out of the UI)."""
    return dg.EnvVar(var) if os.environ.get(var) else default


def lakehouse_resources(
    lake: str | None = None, sources: str | None = None, metadata_db: str | None = None
) -> dict[str, dg.ConfigurableResource]:
    """The resources, from explicit locations (tests, scripts) or from the environment."""
    return {
        "lake": LakeResource(root=lake or setting(LAKE_VAR, lake_uri())),
        "sources": ObjectStoreResource(uri=sources or setting(SOURCES_VAR, sources_uri())),
        "metadata_db": MetadataDbResource(
            url=metadata_db or setting(METADATA_DB_VAR, metadata_db_url())
        ),
        "device": DeviceResource(prefer=os.environ.get(DEVICE_VAR, "auto")),
        # SQL assets compute here: a private in-memory database per connection; memory
        # limit and threads from the environment or as resource config (connection_config)
        "duckdb": DuckDBResource(
            database=":memory:",
            connection_config=connection_config(
                os.environ.get(MEMORY_LIMIT_VAR), os.environ.get(THREADS_VAR)
            ),
        ),
    }


def build_definitions(**locations: str | None) -> dg.Definitions:
    """Everything Dagster loads; `locations` override the environment (see lakehouse_resources)."""
    loaded = dg.Definitions.merge(
        *(dg.load_definitions_from_package_module(package) for package in DEFINING_PACKAGES)
    )
    return dg.Definitions(
        # each asset's page in the UI links to the file and line that defines it
        assets=dg.with_source_code_references(list(loaded.assets or [])),
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=lakehouse_resources(**locations),
        executor=default_executor(),
    )


try:
    defs = build_definitions()
except ConfigError as exc:
    # A wrong setting ends every Dagster command that loads us (`dagster …`, `dg …`, a run
    # worker) with one line naming it and exit status 1, not a loader traceback.
    raise SystemExit(f"lakehouse: error: {exc}") from None
