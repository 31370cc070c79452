"""The single Definitions object: every asset, check, job and resource of the lakehouse."""

from __future__ import annotations

import os

import dagster as dg

from lakehouse.curated import assets as curated_assets
from lakehouse.deployment import default_executor
from lakehouse.features import assets as feature_assets
from lakehouse.features import checks as feature_checks
from lakehouse.features.sensors import nightly_release
from lakehouse.labels import assets as label_assets
from lakehouse.models import assets as model_assets
from lakehouse.models import popularity_assets
from lakehouse.raw import assets as raw_assets
from lakehouse.raw import checks as raw_checks
from lakehouse.resources import LakeResource, MetadataDbResource, ObjectStoreResource
from lakehouse.resources.device import DEVICE_VAR, DeviceResource
from lakehouse.settings import (
    LAKE_VAR,
    METADATA_DB_VAR,
    SOURCES_VAR,
    lake_uri,
    metadata_db_url,
    sources_uri,
)
from lakehouse.sources import assets as source_assets


def setting(var: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (its value, maybe a secret, stays out of the UI)."""
    return dg.EnvVar(var) if os.environ.get(var) else default


observe_sources = dg.define_asset_job(
    "observe_sources",
    selection=dg.AssetSelection.keys("photo_objects", "metadata_db"),
    description="Observe the photo store and the metadata database: content versions.",
)
observe_logs = dg.define_asset_job(
    "observe_logs",
    selection=dg.AssetSelection.keys("activity_logs"),
    description="Observe the daily activity-log files: one content version per day.",
)


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
    }


def build_definitions(**locations: str | None) -> dg.Definitions:
    """Everything Dagster loads; `locations` override the environment (see lakehouse_resources)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [
                source_assets,
                raw_assets,
                curated_assets,
                model_assets,
                feature_assets,
                popularity_assets,
                label_assets,
            ]
        ),
        asset_checks=dg.load_asset_checks_from_modules([raw_checks, feature_checks]),
        jobs=[
            observe_sources,
            observe_logs,
            feature_assets.backfill_logs,
            feature_assets.nightly_training,
        ],
        schedules=[
            dg.ScheduleDefinition(
                job=job,
                cron_schedule="*/15 * * * *",
                default_status=dg.DefaultScheduleStatus.RUNNING,
            )
            for job in (observe_sources, observe_logs)
        ]
        + [feature_assets.nightly_schedule, feature_assets.nightly_logs_schedule],
        sensors=[nightly_release],
        resources=lakehouse_resources(**locations),
        executor=default_executor(),
    )


defs = build_definitions()
