"""Merges and type reconciliation: what a merge's predicate says, and how new rows'
column types are reconciled with a table's without losing a value.

deltalake's merge casts the source to the table's types unchecked (5.5 lands as
5), so types are reconciled before any merge: a column whose values all fit the
table's type is cast to it; a table column whose values all fit the new, wider
type is widened; any other type change fails before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import Schema

from lakehouse.resources.errors import PermanentError

# key bounds written into merge predicates: no quote, backslash or control character
PLAIN_TEXT = re.compile(r"[\w .:/@+=-]*")


class SchemaConflict(PermanentError):
    """New rows change a column's type in a way that would lose values: nothing is written."""


def merge_predicate(rows: pa.Table, key: Sequence[str]) -> str:
    """`rows` (alias s) match the table (alias t) on the key columns, within the key
    ranges of `rows`, so the merge reads only the files those ranges can touch."""
    matches = [f"t.{column} = s.{column}" for column in key]
    return " AND ".join([*key_ranges(rows, key), *matches])


def key_ranges(rows: pa.Table, key: Sequence[str]) -> list[str]:
    """`t.k >= min AND t.k <= max` for each integer or plain-string key column of `rows`.

    deltalake's merge reads every file of the table unless the predicate bounds the
    target's columns: with these bounds it skips files by their min/max statistics,
    so a batch merged into a large table reads the few files it can touch (measured:
    1 of 12 files instead of 12), not the whole table again and again.
    """
    bounds = []
    for column in key:
        values = rows.column(column)
        kind = values.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            continue
        low, high = pc.min_max(values).values()
        if not (low.is_valid and high.is_valid):
            continue
        literals = [literal(value.as_py()) for value in (low, high)]
        if None not in literals:
            bounds += [f"t.{column} >= {literals[0]}", f"t.{column} <= {literals[1]}"]
    return bounds


def literal(value: int | str) -> str | None:
    """A SQL literal of a key bound; None for text that would need escaping rules."""
    if isinstance(value, int):
        return str(value)
    return f"'{value}'" if PLAIN_TEXT.fullmatch(value) else None


def conform(rows: pa.Table, stored: Schema) -> tuple[pa.Table, dict[str, pa.DataType]]:
    """`rows` with every column whose values all fit the `stored` type cast to it, and
    the columns the table must widen to the rows' type instead (to be checked by
    `widened`): the new rows never lose a value to the table's types."""
    current = pa.schema(stored.to_arrow())
    types = {field.name: field.type for field in stored.fields}
    widen: dict[str, pa.DataType] = {}
    for field in Schema.from_arrow(rows.schema).fields:
        if types.get(field.name, field.type) == field.type:
            continue
        try:
            rows = cast_column(rows, field.name, current.field(field.name).type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            widen[field.name] = rows.schema.field(field.name).type
    return rows, widen


def widened(rows: pa.Table, types: dict[str, pa.DataType], table: str) -> pa.Table:
    """A table's stored `rows` with some columns in wider `types`, if every value converts
    exactly; otherwise SchemaConflict, naming the columns and types (`table` says which
    table, where)."""
    try:
        for column, wider in types.items():
            rows = cast_column(rows, column, wider)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        found = {c: str(rows.schema.field(c).type) for c in types}
        raise SchemaConflict(
            f"{table}: new rows bring column types "
            f"{ {c: str(t) for c, t in types.items()} } that neither hold the stored "
            f"values {found} nor fit into them; nothing was written"
        ) from None
    return rows


def type_family(dtype: pa.DataType) -> str:
    """Numbers convert among themselves, texts among themselves; never a number to text."""
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    ):
        return "text"
    if pa.types.is_temporal(dtype):
        return "time"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"list of {type_family(dtype.value_type)}"
    return str(dtype)


def cast_column(rows: pa.Table, column: str, dtype: pa.DataType) -> pa.Table:
    """`rows` with one column converted to `dtype` when every value converts exactly
    (pyarrow's safe cast: no truncation, no overflow); raises ArrowInvalid otherwise."""
    values = rows[column]
    if type_family(values.type) != type_family(dtype):
        raise pa.ArrowInvalid(f"{values.type} does not convert to {dtype}")
    return rows.set_column(rows.schema.get_field_index(column), column, values.cast(dtype))
