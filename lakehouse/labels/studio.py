"""Label Studio's formats: tasks with pre-annotations out, JSON exports of annotations in.

Tasks follow Label Studio's import format (`data` with the image reference,
`predictions` holding a `result` of `choices` with scores and the
`model_version`); the labeling config has one `Choices` for content and one for
style. An export is checked completely before anything is written, and the
annotations of each photo are resolved by majority: a tie leaves it unlabelled.
Exports are cumulative, so a photo of the export that ends without a majority
(a tie, every answer skipped or deleted) loses the label an earlier import gave it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
    answered_at: datetime


@dataclass(frozen=True)
class Tie:
    """A photo whose annotators split evenly on a field: left unlabelled."""

    photo_id: int
    field: str
    votes: dict[str, int]


@dataclass(frozen=True)
class Export:
    """What an export holds: the usable answers, every photo it has a task for, and how
    many results of controls we do not read were ignored (by "name (type)")."""

    annotations: list[Annotation]
    photo_ids: list[int]
    ignored: dict[str, int]


@dataclass(frozen=True)
class Resolution:
    """Labels decided by majority (rows for photo_labels), the ties left open, and the
    export's photos that end without a label (their earlier Label Studio label goes)."""

    labels: list[dict[str, object]]
    ties: list[Tie]
    unlabelled: list[int] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)  # labels an import took away


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


def parse_export(
    text: str,
    photo_ids: Iterable[int],
    annotators: Mapping[int, str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> Export:
    """Every usable annotation of a Label Studio JSON export, or LabelImportError (nothing
    is half-read). Cancelled (skipped) annotations are ignored; results of controls we do
    not read (a TextArea comment, a rating) are ignored and counted. Another export format,
    another project's photos or another labeling config is refused in one line.
    `annotators` maps Label Studio user ids to e-mails (its users API); an id not in it
    is recorded as `user-<id>`."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        if _looks_like_csv(text):
            raise LabelImportError(
                "this is Label Studio's CSV/TSV export, which flattens each task to one row "
                "and drops skips and who answered: export the project as JSON instead"
            ) from exc
        raise LabelImportError(f"not JSON: {exc}") from exc
    if not isinstance(tasks, list):
        raise LabelImportError("expected a JSON list of tasks (Label Studio's JSON export)")
    _refuse_other_formats(tasks)
    _refuse_other_photos(tasks, set(photo_ids))
    problems: list[str] = []
    ignored: Counter[str] = Counter()
    context = Context(problems, ignored, annotators or {})
    annotations = []
    for index, item in enumerate(tasks):
        annotations += _task_annotations(item, f"task {index}", context)
        if advance:
            advance(1)
    if ignored and not annotations and not problems:
        raise LabelImportError(
            f"the annotations answer {', '.join(sorted(ignored))}, not {' and '.join(CHOICES)}: "
            "an export of a project with another labeling config (push ours with "
            "`lakehouse labels push` or use tasks.config.xml)"
        )
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise LabelImportError(
            f"{len(problems)} problem(s) in the export, nothing imported:\n  "
            + "\n  ".join(shown)
            + (f"\n  … and {more} more" if more else "")
        )
    photos = sorted({item["data"]["photo_id"] for item in tasks})
    return Export(annotations, photos, dict(sorted(ignored.items())))


def resolve(annotations: Iterable[Annotation], photo_ids: Iterable[int] = ()) -> Resolution:
    """Majority per photo and field; an even split leaves the photo unlabelled.

    An annotator counts once per photo (their latest answer). The label keeps
    who agreed with it (`labeled_by`, comma-separated) and when the last of
    them answered (`labeled_at`). Every photo of `photo_ids` (the export's
    tasks) that ends without a label — a tie, or no answer left — is listed in
    `unlabelled`: the export is cumulative, so its earlier label must go.
    """
    latest: dict[tuple[int, str], Annotation] = {}
    for answer in sorted(annotations, key=lambda a: a.answered_at):
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
                "labeled_at": max(a.answered_at for a in backers),
                "labeled_by": ",".join(sorted(a.annotator for a in backers)),
            }
        )
    labelled = {row["photo_id"] for row in labels}
    unlabelled = sorted((set(photo_ids) | set(by_photo)) - labelled)
    return Resolution(labels, ties, unlabelled)


def task_photo_ids(text: str) -> set[int]:
    """The photo ids of an export's tasks (what a project already holds)."""
    tasks = json.loads(text)
    return {
        item["data"]["photo_id"]
        for item in tasks
        if isinstance(item, dict)
        and isinstance(item.get("data"), dict)
        and _is_int(item["data"].get("photo_id"))
    }


def _looks_like_csv(text: str) -> bool:
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    return not first.lstrip().startswith(("[", "{")) and ("," in first or "\t" in first)


def _refuse_other_formats(tasks: list[object]) -> None:
    """JSON_MIN (flat rows, one per annotation) and pre-1.0 `completions` are not read:
    both lose what a cumulative import needs, so the user is told which export to choose."""
    for index, item in enumerate(tasks):
        if not isinstance(item, dict):
            continue
        if "completions" in item and "annotations" not in item:
            raise LabelImportError(
                f"task {index} holds `completions`, the export of Label Studio before 1.0: "
                "open the project in Label Studio 1.0 or later and export it as JSON"
            )
        if "data" not in item and ("annotator" in item or "annotation_id" in item):
            raise LabelImportError(
                "this is Label Studio's JSON_MIN export (one flat row per answer, without "
                "skips or annotation times): export the project as JSON instead"
            )


def _refuse_other_photos(tasks: list[object], known: set[int]) -> None:
    """Tasks whose photo ids are not ours: another project's (or another database's) export."""
    ids = [
        item["data"]["photo_id"]
        for item in tasks
        if isinstance(item, dict)
        and isinstance(item.get("data"), dict)
        and _is_int(item["data"].get("photo_id"))
    ]
    unknown = sorted({photo_id for photo_id in ids if photo_id not in known})
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (", …" if len(unknown) > 5 else "")
        raise LabelImportError(
            f"{len(unknown)} photo id(s) of the export are not in the photos table ({shown}): "
            "an export of another project or another metadata database, nothing imported"
        )


@dataclass(frozen=True)
class Context:
    """What reading one export collects: its problems, the ignored results, and the
    user id -> e-mail map to name annotators by."""

    problems: list[str]
    ignored: Counter[str]
    annotators: Mapping[int, str]


def _task_annotations(item: object, where: str, context: Context) -> list[Annotation]:
    problems = context.problems
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
    entries = item.get("annotations", [])
    if not isinstance(entries, list):
        problems.append(f"{where}: annotations is not a list")
        return []
    found = []
    for number, entry in enumerate(entries):
        at = f"{where}, annotation {number}"
        annotation = _annotation(entry, photo_id, at, context)
        if annotation is not None:
            found.append(annotation)
    return found


def _annotation(entry: object, photo_id: int, where: str, context: Context) -> Annotation | None:
    problems, ignored = context.problems, context.ignored
    if not isinstance(entry, dict):
        problems.append(f"{where}: not an object")
        return None
    cancelled = entry.get("was_cancelled", False)
    if not isinstance(cancelled, bool):
        problems.append(f"{where}: was_cancelled is not true/false")
        return None
    if cancelled:
        return None
    before, unread = len(problems), sum(ignored.values())
    answers = _choices(entry.get("result"), where, problems, ignored)
    if not answers and len(problems) == before and sum(ignored.values()) > unread:
        return None  # only controls we do not read (counted): nothing of ours was answered
    if len(answers) < len(CHOICES) and len(problems) == before:
        missing = [name for name in CHOICES if name not in answers]
        problems.append(f"{where}: no answer for {', '.join(missing)}")
    annotator = _annotator(entry.get("completed_by"), where, context)
    answered = _answered_at(entry, where, problems)
    if len(problems) > before:
        return None
    return Annotation(photo_id, annotator, answers["content"], answers["style"], answered)  # type: ignore[arg-type]


def _answered_at(entry: dict, where: str, problems: list[str]) -> datetime | None:
    """The annotation's own time: `created_at`, or `updated_at` where the annotator changed
    their own answer later (`updated_by` is them). Someone else's edit (an admin marking
    ground truth) moves `updated_at` but is not an answer."""
    created = _timestamp(entry.get("created_at"), f"{where}: created_at", problems)
    updated_by = entry.get("updated_by")
    completed_by = entry.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    if (
        _is_int(updated_by)
        and updated_by == completed_by
        and entry.get("updated_at") not in (None, entry.get("created_at"))
    ):
        return _timestamp(entry.get("updated_at"), f"{where}: updated_at", problems)
    return created


def _annotator(value: object, where: str, context: Context) -> str:
    """`completed_by` is a user id (named by e-mail where the users API told us), or an
    object with email/id (older exports)."""
    if _is_int(value):
        return context.annotators.get(value, f"user-{value}")  # type: ignore[call-overload]
    if isinstance(value, dict):
        if isinstance(value.get("email"), str) and value["email"]:
            return value["email"]
        if _is_int(value.get("id")):
            return context.annotators.get(value["id"], f"user-{value['id']}")
    context.problems.append(
        f"{where}: completed_by is neither a user id nor a user with email or id"
    )
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


def _choices(
    result: object, where: str, problems: list[str], ignored: Counter[str]
) -> dict[str, str]:
    """The one choice per question of an annotation's `result`; results of other controls
    are counted in `ignored` by name and type."""
    if not isinstance(result, list):
        problems.append(f"{where}: result is not a list")
        return {}
    answers: dict[str, str] = {}
    for number, region in enumerate(result):
        at = f"{where}, result {number}"
        if not isinstance(region, dict):
            problems.append(f"{at}: not an object")
            continue
        name = region.get("from_name")
        if name not in CHOICES:
            ignored[f"{name} ({region.get('type')})"] += 1
            continue
        if region.get("type") != "choices":
            problems.append(f"{at}: {name} is a {region.get('type')!r} result, not choices")
            continue
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
    return answers


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
