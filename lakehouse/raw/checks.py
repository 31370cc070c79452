"""Checks that the raw layer accounts for every input: accepted + quarantined = source."""

import dagster as dg
import polars as pl

from lakehouse.graph.defaults import check_follows
from lakehouse.lake import LakeResource
from lakehouse.lake.ledger import LEDGER_TABLE
from lakehouse.lake.quarantine import active_quarantine
from lakehouse.lake.tables import RAW_EVENTS, RAW_OBJECTS, RAW_PHOTOS
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.sources.contract import LOGS_SOURCE, OBJECTS_SOURCE, PHOTO_PREFIX


def reconciled(source: int, accepted: int, quarantined: int, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=source == accepted + quarantined,
        description=f"{what}: {source} in source = {accepted} accepted + {quarantined} quarantined",
        metadata={"source": source, "accepted": accepted, "quarantined": quarantined},
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="raw_objects",
    description="Objects in = accepted + quarantined.",
)
def raw_objects_reconcile(sources: ObjectStoreResource, lake: LakeResource) -> dg.AssetCheckResult:
    # status is matched after reading: Arrow finds no kernel comparing a string filter with
    # the files' string_view statistics (pyarrow 26, deltalake 1.6; see curated.views)
    registry = lake.read(RAW_OBJECTS, columns=["status"])
    current = 0 if registry is None else registry.filter(pl.col("status") == "current").height
    return reconciled(
        # names only: the count needs no stat of each file (raw_objects stats them)
        len(sources.listing(PHOTO_PREFIX, stat=False).keys),
        current,
        active_quarantine(lake, OBJECTS_SOURCE).height,
        "photo objects",
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="raw_photos",
    description="Photo rows in = accepted + quarantined.",
)
def raw_photos_reconcile(
    metadata_db: MetadataDbResource, lake: LakeResource
) -> dg.AssetCheckResult:
    return reconciled(
        metadata_db.count_rows("photos"),
        lake.row_count(RAW_PHOTOS),
        active_quarantine(lake, "metadata_db.photos").height,
        "photo rows",
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="raw_events",
    description="Log lines in = events + quarantined lines.",
)
def raw_events_reconcile(lake: LakeResource) -> dg.AssetCheckResult:
    ledger = lake.read(LEDGER_TABLE, filters=[("asset", "=", "raw_events")])
    if ledger is None:
        return reconciled(0, lake.row_count(RAW_EVENTS), 0, "log lines")
    return reconciled(
        int(ledger["lines"].sum()),
        lake.row_count(RAW_EVENTS),
        active_quarantine(lake, LOGS_SOURCE).height,
        "log lines",
    )
