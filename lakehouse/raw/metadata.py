"""Validating rows of the metadata database before they enter the lake.

Each function splits a source table into accepted rows (typed as the lake
expects) and rejected rows with every reason that applies, so that
`rows in = accepted + rejected` holds for every table.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.lake.digests import sha256_hex, with_row_digest
from lakehouse.lake.rejections import DETAIL_LIMIT, REJECTION_COLUMNS, row_detail

UTC_TS = pl.Datetime("us", "UTC")
USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "created_at": UTC_TS,
    "home_city": pl.String(),
}
PHOTO_SCHEMA: dict[str, pl.DataType] = {
    "photo_id": pl.Int64(),
    "user_id": pl.Int64(),
    "object_key": pl.String(),
    "title": pl.String(),
    "posted_at": UTC_TS,
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
    "location_name": pl.String(),
}
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "photo_id": pl.Int64(),
    "content_label": pl.String(),
    "style_label": pl.String(),
    "labeled_at": UTC_TS,
    "labeled_by": pl.String(),
}
# Label columns a source may lack (null then): `labeled_by` arrives with the first import.
OPTIONAL_LABEL_COLUMNS = ("labeled_by",)


class SourceSchemaError(ValueError):
    """A source table changed incompatibly (a required column is gone): no retry helps
    (the raw assets fail their step at once on it)."""


@dataclass(frozen=True)
class Validated:
    """Accepted rows (with `row_sha256`) and rejected rows in quarantine shape."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame


def validate_users(users: pl.DataFrame) -> Validated:
    typed = typed_frame(users, USER_SCHEMA)
    checks = [
        *well_formed(USER_SCHEMA, required=["user_id", "created_at"]),
        (duplicated("user_id"), "duplicate user_id"),
    ]
    return split_rows(users, typed, checks, USER_SCHEMA, key="user_id")


def validate_photos(photos: pl.DataFrame, user_ids: pl.Series, objects: pl.DataFrame) -> Validated:
    """Photos whose author exists, whose object was accepted, with sane coordinates.

    `objects` has `key` and `problem` (null for an accepted object, else why
    the object itself was quarantined).
    """
    typed = typed_frame(photos, PHOTO_SCHEMA).join(
        objects.select(pl.col("key").alias("object_key"), pl.col("problem"), present=True),
        on="object_key",
        how="left",
        maintain_order="left",
    )
    checks = [
        *well_formed(PHOTO_SCHEMA, required=["photo_id", "user_id", "object_key", "posted_at"]),
        (duplicated("photo_id"), "duplicate photo_id"),
        (~pl.col("user_id").is_in(user_ids.implode()), "unknown user_id (dangling reference)"),
        (pl.col("present").is_null(), "object missing from the store"),
        (pl.col("problem").is_not_null(), "object quarantined: " + pl.col("problem")),
        (~pl.col("latitude").is_between(-90, 90), "latitude out of range [-90, 90]"),
        (~pl.col("longitude").is_between(-180, 180), "longitude out of range [-180, 180]"),
    ]
    return split_rows(photos, typed, checks, PHOTO_SCHEMA, key="photo_id")


def validate_labels(labels: pl.DataFrame, photo_ids: pl.Series) -> Validated:
    labels = labels.with_columns(
        pl.lit(None, pl.String).alias(column)
        for column in OPTIONAL_LABEL_COLUMNS
        if column not in labels.columns
    )
    typed = typed_frame(labels, LABEL_SCHEMA)
    checks = [
        *well_formed(LABEL_SCHEMA, required=["photo_id", "content_label", "style_label"]),
        (duplicated("photo_id"), "duplicate label for photo_id"),
        (~pl.col("photo_id").is_in(photo_ids.implode()), "label for an unknown photo"),
    ]
    return split_rows(labels, typed, checks, LABEL_SCHEMA, key="photo_id")


def typed_frame(source: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The contract's columns in the lake's types; values that do not convert become null.

    A missing contract column is an incompatible schema change: it fails
    before anything is written. Columns beyond the contract keep their values.
    """
    missing = [column for column in schema if column not in source.columns]
    if missing:
        raise SourceSchemaError(
            f"source table lacks required column(s) {missing} (has {source.columns}): "
            "an incompatible schema change, nothing was written"
        )
    return source.select(
        *(converted(source, column, dtype) for column, dtype in schema.items()),
        *(
            converted(source, column, source.schema[column])
            for column in extra_columns(source, schema)
        ),
        *(pl.col(column).is_null().alias(f"_missing_{column}") for column in schema),
    )


def extra_columns(source: pl.DataFrame, schema: dict[str, pl.DataType]) -> list[str]:
    """Source columns beyond the contract: kept, so the raw copy stays faithful when a
    source gains a column (the lake table gains it too)."""
    return [column for column in source.columns if column not in schema]


def converted(source: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Expr:
    """`column` in the lake's type; a value that does not convert becomes null (and is caught)."""
    current = source.schema[column]
    expr = pl.col(column)
    if current == pl.Binary:  # SQLite lets any column hold a BLOB
        expr, current = expr.map_elements(utf8_or_none, return_dtype=pl.String), pl.String()
    if dtype == UTC_TS:
        if current == pl.String:
            return expr.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        if isinstance(current, pl.Datetime):
            if current.time_zone is None:
                return expr.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if dtype.is_integer() and current.is_float():  # 5.5 is no id; truncating would invent 5
        expr = pl.when(expr.round() == expr).then(expr)
    return expr.cast(dtype, strict=False)


def utf8_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def well_formed(schema: dict[str, pl.DataType], required: list[str]) -> list:
    """Checks that no value is lost or changed on the way in.

    A required value may not be missing; no value may fail to convert to the
    lake's type (it would become null); no text may hold a NUL byte (most
    tools cut the text there, so the lake would not show what the source holds).
    """
    return [
        *((pl.col(f"_missing_{column}"), f"missing {column}") for column in required),
        *(
            (pl.col(column).is_null() & ~pl.col(f"_missing_{column}"), f"invalid {column}")
            for column in schema
        ),
        *(
            (pl.col(column).str.contains("\x00", literal=True), f"NUL byte in {column}")
            for column, dtype in schema.items()
            if dtype == pl.String
        ),
    ]


def duplicated(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & pl.col(column).is_duplicated()


def split_rows(
    source: pl.DataFrame,
    typed: pl.DataFrame,
    checks: list,
    schema: dict[str, pl.DataType],
    key: str,
) -> Validated:
    reasons = pl.concat_str(
        [
            pl.when(condition.fill_null(False)).then(
                reason if isinstance(reason, pl.Expr) else pl.lit(reason)
            )
            for condition, reason in checks
        ],
        separator="; ",
        ignore_nulls=True,
    )
    flagged = typed.with_columns(reason=pl.when(reasons != "").then(reasons))
    refused = flagged["reason"].is_not_null()
    accepted = flagged.filter(refused.not_()).select(*schema, *extra_columns(source, schema))
    # fingerprints of the typed values, so Postgres and SQLite give the same lake versions
    accepted = with_row_digest(accepted)
    # the source row as a person would read it, for the refused rows only (JSON text per
    # row: for every row it was most of a no-change snapshot of 100k photos)
    details = [row_detail(row) for row in source.filter(refused).iter_rows(named=True)]
    rejected = flagged.filter(refused).with_columns(detail=pl.Series(details, dtype=pl.String))
    rejected = rejected.select(
        key=pl.format(f"{key}={{}}", pl.col(key).cast(pl.String).fill_null("null")),
        line=pl.lit(None, pl.Int64),
        sha256=sha256_hex(rejected["detail"]),
        reason="reason",
        detail=pl.col("detail").str.slice(0, DETAIL_LIMIT),
    )
    return Validated(accepted, rejected.select(REJECTION_COLUMNS))
