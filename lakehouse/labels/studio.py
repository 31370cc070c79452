"""Label Studio's formats: tasks with pre-annotations out, JSON exports of annotations in.

Tasks follow Label Studio's import format (`data` with the image reference,
`predictions` holding a `result` of `choices` with scores and the
`model_version`); the labeling config has one `Choices` for content and one for
style. An export is checked completely before anything is written, and the
annotations of each photo are resolved by majority: a tie leaves it unlabelled.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

IMAGE = "image"
CHOICES = {"content": CONTENT_CLASSES, "style": STYLES}
MAX_REPORTED_PROBLEMS = 20


class LabelImportError(ValueError):
    """An export that cannot be imported; the message lists every problem found."""


@dataclass(frozen=True)
class Annotation:
    """One person's complete answer for one photo."""

    photo_id: int
    annotator: str
    content: str
    style: str
    updated_at: datetime


@dataclass(frozen=True)
class Tie:
    """A photo whose annotators split evenly on a field: left unlabelled."""

    photo_id: int
    field: str
    votes: dict[str, int]


@dataclass(frozen=True)
class Resolution:
    """Labels decided by majority (rows for photo_labels) and the ties left open."""

    labels: list[dict[str, object]]
    ties: list[Tie]


def label_config() -> str:
    """The labeling config XML: the image and one single-choice question per head."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value=f"${IMAGE}")
    for name, values in CHOICES.items():
        ET.SubElement(view, "Header", value=f"{name.capitalize()} of the photo")
        choices = ET.SubElement(
            view,
            "Choices",
            name=name,
            toName=IMAGE,
            choice="single",
            required="true",
            showInline="true",
        )
        for value in values:
            ET.SubElement(choices, "Choice", value=value)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def task(photo: Mapping[str, object], image: str) -> dict[str, object]:
    """One import task: the photo and the classifier's answer as a pre-annotation (none
    before the first classifier: day 0's queue has no answers to offer)."""
    data = {
        IMAGE: image,
        "photo_id": int(photo["photo_id"]),  # type: ignore[call-overload]
        "sha256": photo["sha256"],
        "object_key": photo["object_key"],
        "title": photo["title"],
        "uncertainty": float(photo["uncertainty"]),  # type: ignore[arg-type]
    }
    if photo["model_version"] is None:
        return {"data": data}
    scores = {name: float(photo[f"{name}_score"]) for name in CHOICES}  # type: ignore[arg-type]
    return {
        "data": data,
        "predictions": [
            {
                "model_version": photo["model_version"],
                "score": min(scores.values()),
                "result": [
                    {
                        "id": f"{name}-{photo['photo_id']}",
                        "from_name": name,
                        "to_name": IMAGE,
                        "type": "choices",
                        "value": {"choices": [photo[f"{name}_label"]]},
                        "score": scores[name],
                    }
                    for name in CHOICES
                ],
            }
        ],
    }


def parse_export(text: str, photo_ids: Iterable[int]) -> list[Annotation]:
    """Every usable annotation of a Label Studio JSON export, or LabelImportError naming
    every problem (nothing is half-read). Cancelled (skipped) annotations are ignored."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelImportError(f"not JSON: {exc}") from exc
    if not isinstance(tasks, list):
        raise LabelImportError("expected a JSON list of tasks (Label Studio's JSON export)")
    known = set(photo_ids)
    problems: list[str] = []
    annotations = [
        annotation
        for index, item in enumerate(tasks)
        for annotation in _task_annotations(item, f"task {index}", known, problems)
    ]
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise LabelImportError(
            f"{len(problems)} problem(s) in the export, nothing imported:\n  "
            + "\n  ".join(shown)
            + (f"\n  … and {more} more" if more else "")
        )
    return annotations


def resolve(annotations: Iterable[Annotation]) -> Resolution:
    """Majority per photo and field; an even split leaves the photo unlabelled.

    An annotator counts once per photo (their latest answer). The label keeps
    who agreed with it (`labeled_by`, comma-separated) and when the last of
    them answered (`labeled_at`).
    """
    latest: dict[tuple[int, str], Annotation] = {}
    for answer in sorted(annotations, key=lambda a: a.updated_at):
        latest[(answer.photo_id, answer.annotator)] = answer
    by_photo: dict[int, list[Annotation]] = {}
    for answer in latest.values():
        by_photo.setdefault(answer.photo_id, []).append(answer)
    labels, ties = [], []
    for photo_id in sorted(by_photo):
        answers = by_photo[photo_id]
        decided = {}
        for name in CHOICES:
            votes = Counter(getattr(a, name) for a in answers)
            (best, count), *rest = votes.most_common()
            if rest and rest[0][1] == count:
                ties.append(Tie(photo_id, name, dict(sorted(votes.items()))))
            else:
                decided[name] = best
        if len(decided) < len(CHOICES):
            continue
        agreed = [
            a for a in answers if (a.content, a.style) == (decided["content"], decided["style"])
        ]
        backers = agreed or [a for a in answers if a.content == decided["content"]]
        labels.append(
            {
                "photo_id": photo_id,
                "content_label": decided["content"],
                "style_label": decided["style"],
                "labeled_at": max(a.updated_at for a in backers),
                "labeled_by": ",".join(sorted(a.annotator for a in backers)),
            }
        )
    return Resolution(labels, ties)


def _task_annotations(
    item: object, where: str, known: set[int], problems: list[str]
) -> list[Annotation]:
    if not isinstance(item, dict):
        problems.append(f"{where}: not an object")
        return []
    if "id" in item:
        where = f"{where} (id {item['id']})"
    data = item.get("data")
    photo_id = data.get("photo_id") if isinstance(data, dict) else None
    if not _is_int(photo_id):
        problems.append(f"{where}: data.photo_id missing or not an integer")
        return []
    if photo_id not in known:
        problems.append(f"{where}: photo_id {photo_id} is not in the photos table")
        return []
    entries = item.get("annotations", [])
    if not isinstance(entries, list):
        problems.append(f"{where}: annotations is not a list")
        return []
    found = []
    for number, entry in enumerate(entries):
        annotation = _annotation(entry, photo_id, f"{where}, annotation {number}", problems)
        if annotation is not None:
            found.append(annotation)
    return found


def _annotation(entry: object, photo_id: int, where: str, problems: list[str]) -> Annotation | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: not an object")
        return None
    cancelled = entry.get("was_cancelled", False)
    if not isinstance(cancelled, bool):
        problems.append(f"{where}: was_cancelled is not true/false")
        return None
    if cancelled:
        return None
    before = len(problems)
    annotator = _annotator(entry.get("completed_by"), where, problems)
    created = _timestamp(entry.get("created_at"), f"{where}: created_at", problems)
    updated = (
        created
        if entry.get("updated_at") in (None, entry.get("created_at"))
        else _timestamp(entry.get("updated_at"), f"{where}: updated_at", problems)
    )
    answers = _choices(entry.get("result"), where, problems)
    if len(problems) > before:
        return None
    return Annotation(photo_id, annotator, answers["content"], answers["style"], updated)  # type: ignore[arg-type]


def _annotator(value: object, where: str, problems: list[str]) -> str:
    """`completed_by` is a user id, or an object with email/id (older exports)."""
    if _is_int(value):
        return f"user-{value}"
    if isinstance(value, dict):
        if isinstance(value.get("email"), str) and value["email"]:
            return value["email"]
        if _is_int(value.get("id")):
            return f"user-{value['id']}"
    problems.append(f"{where}: completed_by is neither a user id nor a user with email or id")
    return ""


def _timestamp(value: object, where: str, problems: list[str]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(f"{where} missing or not a string")
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{where} {value!r} is not an ISO 8601 time")
        return None
    if moment.tzinfo is None:
        problems.append(f"{where} {value!r} has no time zone")
        return None
    return moment.astimezone(UTC)


def _choices(result: object, where: str, problems: list[str]) -> dict[str, str]:
    """The one choice per question of an annotation's `result`."""
    if not isinstance(result, list):
        problems.append(f"{where}: result is not a list")
        return {}
    answers: dict[str, str] = {}
    seen: set[str] = set()
    for number, region in enumerate(result):
        at = f"{where}, result {number}"
        if not isinstance(region, dict) or region.get("type") != "choices":
            problems.append(f"{at}: not a choices result")
            continue
        name = region.get("from_name")
        if name not in CHOICES:
            problems.append(f"{at}: from_name {name!r} is not one of {', '.join(CHOICES)}")
            continue
        seen.add(name)
        value = region.get("value")
        picked = value.get("choices") if isinstance(value, dict) else None
        if not (isinstance(picked, list) and len(picked) == 1 and picked[0] in CHOICES[name]):
            problems.append(
                f"{at}: {name} must be exactly one of {', '.join(CHOICES[name])}, got {picked!r}"
            )
            continue
        if name in answers:
            problems.append(f"{at}: a second answer for {name}")
            continue
        answers[name] = picked[0]
    missing = [name for name in CHOICES if name not in seen]
    if missing:
        problems.append(f"{where}: no answer for {', '.join(missing)}")
    return answers


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
