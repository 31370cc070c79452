"""Which lake tables exist, in which layer, at which version: the lake's table of contents."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.lake import LakeResource
from lakehouse.lake.tables import LAYER_ORDER, layer_of


@dataclass(frozen=True)
class TableEntry:
    name: str
    layer: str
    uri: str
    version: int
    rows: int


def table_entries(lake: LakeResource) -> list[TableEntry]:
    """Every Delta table under the lake root, in layer order."""
    entries = []
    for name in lake.table_names():
        table = lake.open(name)
        if table is None:
            continue
        entries.append(
            TableEntry(name, layer_of(name), lake.table_uri(name), table.version(), table.count())
        )
    return sorted(entries, key=lambda e: (LAYER_ORDER.index(e.layer), e.name))
