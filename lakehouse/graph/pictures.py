"""Pictures in the UI, stored once per content.

Dagster 1.13's UI shows a picture only inline in markdown metadata (a `data:` URI): it
has no image metadata type and serves no files. So every picture is stored in the lake's
blob store under its SHA-256, and a materialization carries it inline only when it
differs from the picture the asset's previous materialization showed; otherwise it
carries the reference (blob URI, digest, and the run whose materialization shows it). A
no-op run adds a few hundred bytes to the event log, not another copy of the PNG.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import dagster as dg

from lakehouse.lake import LakeResource
from lakehouse.lake.blobs import blob_uri, object_key


def markdown_image(png: bytes, caption: str) -> str:
    """Markdown with the PNG embedded and its caption under it."""
    encoded = base64.b64encode(png).decode()
    return f"![{caption}](data:image/png;base64,{encoded})\n\n*{caption}*"


def unchanged(caption: str, run_id: str) -> str:
    return f"*{caption}*: unchanged, shown on the materialization of run `{run_id[:8]}`"


def picture(
    context: dg.AssetExecutionContext, lake: LakeResource, name: str, png: bytes, caption: str
) -> dict[str, dg.MetadataValue]:
    """Metadata entries for picture `name`: `name` (inline when new, else a caption saying
    where it is shown), `name/sha256`, `name/uri` (the stored PNG) and `name/run`."""
    key = lake.put_object(png)
    sha256 = key.rsplit("/", 1)[1]
    shown = shown_where(context, previous_metadata(context), name, sha256, caption, lambda: png)
    assert shown is not None  # the PNG is at hand
    markdown, run_id = shown
    return {
        name: markdown,
        f"{name}/sha256": dg.MetadataValue.text(sha256),
        f"{name}/uri": dg.MetadataValue.url(blob_uri(lake.root, key)),
        f"{name}/run": dg.MetadataValue.dagster_run(run_id),
    }


def shown_where(
    context: dg.AssetExecutionContext,
    earlier: dict[str, dg.MetadataValue],
    name: str,
    sha256: str,
    caption: str,
    png: Callable[[], bytes | None],
) -> tuple[dg.MetadataValue, str] | None:
    """Picture `name`'s markdown and the run whose materialization shows it: a reference
    to the previous materialization (`earlier`) when that one showed this very picture,
    else the PNG (`png()`, None when it cannot be had: then None) inline, shown by this
    run."""
    if getattr(earlier.get(f"{name}/sha256"), "value", None) == sha256 and (
        f"{name}/run" in earlier
    ):
        run_id = str(earlier[f"{name}/run"].value)
        return dg.MetadataValue.md(unchanged(caption, run_id)), run_id
    data = png()
    if data is None:
        return None
    return dg.MetadataValue.md(markdown_image(data, caption)), context.run_id


def previous_metadata(context: dg.AssetExecutionContext) -> dict[str, dg.MetadataValue]:
    """The metadata of the asset's latest materialization before this run (empty if none)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return {}
    return dict(event.asset_materialization.metadata)


def earlier_pictures(
    context: dg.AssetExecutionContext,
    captions: dict[str, str],
    earlier: dict[str, dg.MetadataValue] | None = None,
) -> dict[str, dg.MetadataValue]:
    """When nothing was drawn this run (e.g. a model reused, not retrained): the references
    to the pictures of the previous materialization (`earlier`, if the caller has read it
    already), captioned, never the PNGs again."""
    earlier = previous_metadata(context) if earlier is None else earlier
    found: dict[str, dg.MetadataValue] = {}
    for name, caption in captions.items():
        if f"{name}/run" not in earlier:
            continue
        run_id = str(earlier[f"{name}/run"].value)
        found[name] = dg.MetadataValue.md(unchanged(caption, run_id))
        for part in ("sha256", "uri", "run"):
            found[f"{name}/{part}"] = earlier[f"{name}/{part}"]
    return found


def without_inline_pictures(earlier: dict[str, dg.MetadataValue]) -> dict[str, dg.MetadataValue]:
    """Earlier metadata to show again, each picture in it by reference (its caption and
    the run whose materialization shows it), never the PNG inline a second time."""
    shown = dict(earlier)
    for name in pictures_in(earlier):
        caption = caption_of(earlier[name])
        shown[name] = dg.MetadataValue.md(unchanged(caption, str(earlier[f"{name}/run"].value)))
    return shown


def pictures_in(metadata: dict[str, dg.MetadataValue]) -> list[str]:
    """The names of the pictures `picture` put in this metadata."""
    return [key for key in metadata if f"{key}/run" in metadata and f"{key}/sha256" in metadata]


def caption_of(shown: dg.MetadataValue) -> str:
    """A picture's caption, from its markdown (inline or by reference)."""
    caption = str(shown.value).rsplit("\n\n", 1)[-1].strip("*")
    return caption.split("*: unchanged, shown on", 1)[0]


def pictures_shown_again(
    context: dg.AssetExecutionContext, lake: LakeResource, metadata: dict[str, dg.MetadataValue]
) -> dict[str, dg.MetadataValue] | None:
    """Metadata recorded by another run (perhaps on another Dagster instance) to report
    again: a picture this asset's previous materialization here shows is referred to
    there; any other is read back from the lake and shown inline, so that the UI always
    has it (None if one is no longer stored)."""
    names = pictures_in(metadata)
    if not names:
        return metadata
    earlier, shown = previous_metadata(context), dict(metadata)
    for name in names:
        key = object_key(str(metadata[f"{name}/sha256"].value))

        def stored(key: str = key) -> bytes | None:
            # gone from the lake: only a computation can show it
            return lake.get_object(key) if lake.has_object(key) else None

        found = shown_where(
            context, earlier, name, key.rsplit("/", 1)[1], caption_of(metadata[name]), stored
        )
        if found is None:
            return None
        shown[name], run_id = found
        shown[f"{name}/run"] = dg.MetadataValue.dagster_run(run_id)
    return shown
