"""The data flywheel: Label Studio round trip, weak supervision, named releases."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
import torch

from lakehouse.access import training
from lakehouse.access.query import connect, release_diff, table_diff
from lakehouse.access.releases import find_release, list_releases
from lakehouse.automation.sensors import nightly_release, nightly_release_name
from lakehouse.cli.main import main
from lakehouse.demo.world import generate_world
from lakehouse.labels.label_model import (
    ABSTAIN,
    fit_generative,
    function_stats,
    majority_vote,
)
from lakehouse.labels.labeling_functions import LABELING_FUNCTIONS, same_place
from lakehouse.labels.logic import (
    functions_digest,
    head_uncertainty,
    input_digests,
    label_matrix,
    label_matrix_reusing,
    weak_label_rows,
    with_place_counts,
)
from lakehouse.labels.studio import LabelImportError, parse_export
from lakehouse.labels.transfer import config_path, import_annotations
from lakehouse.lake import LakeResource
from lakehouse.models.assets import class_rows, labelled_images, weak_labelled_images
from lakehouse.models.classifier import UNKNOWN
from lakehouse.raw.metadata import validate_labels
from lakehouse.resources import MetadataDbResource
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES
from lakehouse_tests.conftest import RAW_LAYER, Lakehouse
from lakehouse_tests.delta_counts import NOTHING, written_since

pytestmark = pytest.mark.flywheel

FIRST, LAST = "2026-10-01", "2026-10-12"
WORLD = {"photos": 40, "users": 8, "days": 12, "seed": 7}
UPSTREAM = RAW_LAYER | {"images", "user_activity"}
DOWNSTREAM = {"photo_features", "popularity_labels", "training_set", "label_queue", "weak_labels"}
SEEDED_MODEL = "seeded-test-model"
ANNOTATION_IDS = itertools.count(1000)


@dataclass(frozen=True)
class Built:
    sources: Path
    lake: Path


def seed_photo_classes(lake: LakeResource) -> None:
    """Classifier outputs for every image without training one (that takes a minute):
    seeded random probabilities, written the way photo_classes writes them."""
    shas = lake.read("images", columns=["sha256"])["sha256"].sort().to_list()
    generator = torch.Generator().manual_seed(0)
    content = (3 * torch.randn(len(shas), len(CONTENT_CLASSES), generator=generator)).softmax(1)
    style = (3 * torch.randn(len(shas), len(STYLES), generator=generator)).softmax(1)
    lake.upsert(
        "photo_classes",
        class_rows(shas, SEEDED_MODEL, content, style),
        key=["sha256", "model_version"],
        commit_info={"written_by": "test seed"},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """12 days of a small world through training_set, label_queue and weak_labels."""
    root = tmp_path_factory.mktemp("flywheel")
    sources = root / "sources"
    sources.mkdir()
    generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", **WORLD)
    house = Lakehouse(sources=sources, lake=root / "lake")
    house.observe()
    house.materialize(FIRST, LAST, select=UPSTREAM)
    seed_photo_classes(house.lake_resource)
    house.materialize(FIRST, LAST, select=DOWNSTREAM)
    assert house.lake_resource.row_count("training_set") > 0
    return Built(sources, house.lake)


@pytest.fixture
def house(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lakehouse:
    """A private copy of the built world and lake; the CLI points at it."""
    shutil.copytree(built.sources, tmp_path / "sources")
    shutil.copytree(built.lake, tmp_path / "lake")
    copy = Lakehouse(sources=tmp_path / "sources", lake=tmp_path / "lake")
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(copy.sources))
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(copy.lake))
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", copy.db_url)
    return copy


def db_labels(house: Lakehouse) -> pl.DataFrame:
    engine = sa.create_engine(house.db_url)
    try:
        with engine.connect() as connection:
            return pl.read_database("SELECT * FROM photo_labels", connection)
    finally:
        engine.dispose()


def annotation(who: object, content: str, style: str, at: str, **extra: object) -> dict:
    """One annotation as Label Studio exports it: two `choices` results."""
    return {
        "id": next(ANNOTATION_IDS),
        "completed_by": who,
        "result": [
            {
                "id": "c1",
                "from_name": "content",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": [content]},
            },
            {
                "id": "s1",
                "from_name": "style",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": [style]},
            },
        ],
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": at,
        "updated_at": at,
        "lead_time": 3.2,
        **extra,
    }


ALICE = {"id": 1, "email": "alice@example.com", "first_name": "", "last_name": ""}
BOB = 2  # newer exports give only the user id
CAROL = {"id": 3, "email": "carol@example.com", "first_name": "", "last_name": ""}


def studio_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio exports after two people (and once a third) labelled our tasks:
    agreement, a 2:1 conflict, a tie, a skipped task and an untouched one."""
    answers = [
        [
            annotation(ALICE, "circle", "gray", "2026-11-20T10:00:00.120000Z"),
            annotation(BOB, "circle", "gray", "2026-11-20T10:05:00Z"),
        ],
        [
            annotation(ALICE, "square", "blurred", "2026-11-20T11:00:00Z"),
            annotation(BOB, "triangle", "blurred", "2026-11-20T11:01:00Z"),
            annotation(CAROL, "square", "blurred", "2026-11-20T11:30:00+00:00"),
        ],
        [
            annotation(ALICE, "stripes", "high_contrast", "2026-11-20T12:00:00Z"),
            annotation(BOB, "circle", "high_contrast", "2026-11-20T12:00:30Z"),
        ],
        [annotation(ALICE, "circle", "gray", "2026-11-20T13:00:00Z", was_cancelled=True)],
        [],
    ]
    return [
        {**task, "id": 100 + i, "annotations": answers[i], "project": 7}
        for i, task in enumerate(tasks)
    ]


def test_round_trip_changes_exactly_those_labels_and_reruns_only_their_dependents(
    house: Lakehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = house.lake_resource
    tasks_path = tmp_path / "out" / "tasks.json"
    assert main(["labels", "export", "--n", "5", "--out", str(tasks_path)]) == 0
    tasks = json.loads(tasks_path.read_text())

    queue = lake.read("label_queue").sort("uncertainty", "photo_id", descending=[True, False])
    ids = [t["data"]["photo_id"] for t in tasks]
    assert ids == queue["photo_id"].head(5).to_list(), "the most uncertain photos first"
    for task, photo in zip(tasks, queue.head(5).iter_rows(named=True), strict=True):
        assert task["data"]["image"] == f"/data/local-files/?d={photo['object_key']}"
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == SEEDED_MODEL
        assert prediction["score"] == min(photo["content_score"], photo["style_score"])
        by_name = {r["from_name"]: r for r in prediction["result"]}
        assert by_name["content"]["value"]["choices"] == [photo["content_label"]]
        assert by_name["style"]["value"]["choices"] == [photo["style_label"]]
        assert {r["to_name"] for r in prediction["result"]} == {"image"}
        assert {r["type"] for r in prediction["result"]} == {"choices"}
    config = ET.fromstring(config_path(tasks_path).read_text())
    assert config.tag == "View"
    assert config.find("Image").attrib == {"name": "image", "value": "$image"}
    choices = {c.attrib["name"]: c for c in config.iter("Choices")}
    assert [c.attrib["value"] for c in choices["content"]] == list(CONTENT_CLASSES)
    assert [c.attrib["value"] for c in choices["style"]] == list(STYLES)
    assert {c.attrib["toName"] for c in choices.values()} == {"image"}

    labels_before = db_labels(house)
    versions_before = house.table_versions()
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(studio_export(tasks)))
    capsys.readouterr()
    assert main(["labels", "import", str(export_path)]) == 0
    printed = capsys.readouterr().out
    assert f"labelled 2 photos: {', '.join(map(str, sorted(ids[:2])))}" in printed
    assert f"tie, left unlabelled: photo {ids[2]} content (circle: 1, stripes: 1)" in printed

    labels_after = db_labels(house)
    new = labels_after.filter(~pl.col("photo_id").is_in(labels_before["photo_id"].implode()))
    assert new.sort("photo_id").select(
        "photo_id", "content_label", "style_label", "labeled_by", "labeled_at"
    ).rows() == sorted(
        [
            (ids[0], "circle", "gray", "alice@example.com,user-2", "2026-11-20T10:05:00+00:00"),
            (
                ids[1],
                "square",
                "blurred",
                "alice@example.com,carol@example.com",
                "2026-11-20T11:30:00+00:00",
            ),
        ]
    )
    kept = labels_after.filter(pl.col("photo_id").is_in(labels_before["photo_id"].implode()))
    assert kept.drop("labeled_by").sort("photo_id").equals(labels_before.sort("photo_id"))

    house.observe()
    house.materialize(FIRST, LAST, select=UPSTREAM | DOWNSTREAM)
    labelled = {ids[0], ids[1]}
    found = written_since(lake, versions_before)  # Delta's commit metrics, per table
    labels = found["raw_photo_labels"]
    assert (labels.commits, labels.inserted, labels.updated, labels.deleted) == (1, 2, 0, 0)
    diff = table_diff(
        "raw_photo_labels",
        versions_before["raw_photo_labels"],
        lake.version("raw_photo_labels"),
        lake=str(house.lake),
    ).fetchall()
    assert {(row[0], row[1]) for row in diff} == {("added", i) for i in labelled}
    in_lake = lake.read("raw_photo_labels").filter(pl.col("photo_id") == ids[1])
    assert in_lake.select("labeled_by", "labeled_at").row(0) == (
        "alice@example.com,carol@example.com",
        datetime(2026, 11, 20, 11, 30, tzinfo=UTC),
    )
    assert (found["label_queue"].deleted, found["label_queue"].rows) == (2, 2)
    assert labelled.isdisjoint(lake.read("label_queue")["photo_id"].to_list())
    weak = lake.read("weak_labels").filter(pl.col("photo_id").is_in(list(labelled)))
    assert sorted(weak["gold_label"].to_list()) == ["circle", "square"]
    untouched = UPSTREAM - {"raw_photo_labels", "quarantine"} | {
        "photo_features",
        "popularity_labels",
        "training_set",
    }
    assert {name: found[name] for name in untouched} == dict.fromkeys(untouched, NOTHING)
    versions = house.table_versions()
    assert {name: versions[name] for name in untouched} == {
        name: versions_before[name] for name in untouched
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


MALFORMED = {
    "not json": "[{",
    "not a list": json.dumps({"data": {}}),
    "unknown photo": json.dumps([{"data": {"photo_id": 99999}, "annotations": []}]),
    "unknown class": json.dumps(
        [
            {
                "data": {"photo_id": 1},
                "annotations": [annotation(1, "circle", "gray", "2026-11-20T10:00:00Z")],
            },
            {
                "data": {"photo_id": 2},
                "annotations": [annotation(1, "hexagon", "gray", "2026-11-20T10:00:00Z")],
            },
        ]
    ),
    "no time": json.dumps(
        [{"data": {"photo_id": 1}, "annotations": [annotation(1, "circle", "gray", None)]}]
    ),
    "no annotator": json.dumps(
        [
            {
                "data": {"photo_id": 1},
                "annotations": [annotation(None, "circle", "gray", "2026-11-20T10:00:00Z")],
            }
        ]
    ),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_export_changes_nothing(
    kind: str, lakehouse: Lakehouse, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", lakehouse.db_url)
    database = lakehouse.sources / "metadata.db"
    before = sha256_file(database)
    path = tmp_path / "export.json"
    path.write_text(MALFORMED[kind])

    assert main(["labels", "import", str(path)]) == 1

    error = capsys.readouterr().err
    assert error.startswith("lakehouse: error: ")
    assert sha256_file(database) == before


def test_the_error_names_every_problem() -> None:
    text = json.dumps(
        [
            {
                "data": {"photo_id": 1},
                "annotations": [annotation(1, "hexagon", "gray", "2026-11-20T10:00:00Z")],
            },
            {
                "id": 9,
                "data": {"photo_id": 2},
                "annotations": [annotation(1, "circle", "gray", "yesterday")],
            },
        ]
    )
    with pytest.raises(LabelImportError) as raised:
        parse_export(text, [1, 2])
    message = str(raised.value)
    assert "2 problem(s)" in message
    assert "task 0, annotation 0, result 0: content must be exactly one of circle" in message
    assert "task 1 (id 9), annotation 0: created_at 'yesterday' is not an ISO 8601 time" in message


# --- weak supervision --------------------------------------------------------------

# Rows are photos, columns labeling functions; -1 abstains. Hand-counted below.
MATRIX = np.array([[0, 0, -1], [1, 2, 1], [-1, -1, -1], [2, -1, 0], [-1, 1, 1]])
GOLD = np.array([0, 1, ABSTAIN, 2, 2])


def test_label_matrix_statistics_match_hand_counts() -> None:
    stats = function_stats(MATRIX, GOLD)
    assert [s.coverage for s in stats] == [3 / 5, 3 / 5, 3 / 5]
    assert [s.overlap for s in stats] == [3 / 5, 3 / 5, 3 / 5]
    # f0 conflicts on rows 1 and 3, f1 on row 1, f2 on rows 1 and 3
    assert [s.conflict for s in stats] == [2 / 5, 1 / 5, 2 / 5]
    assert [s.gold_covered for s in stats] == [3, 3, 3]
    assert [s.accuracy for s in stats] == [1.0, 1 / 3, 1 / 3]
    assert function_stats(MATRIX)[0].accuracy is None

    labels, probs = majority_vote(MATRIX, 3)
    assert labels.tolist() == [0, 1, ABSTAIN, ABSTAIN, 1]
    assert probs[2].tolist() == [1 / 3, 1 / 3, 1 / 3]  # no vote
    assert probs[3].tolist() == [0.5, 0.0, 0.5]  # a tie

    assert head_uncertainty(np.array([[1.0, 0.0, 0.0]]), "margin").tolist() == [0.0]
    assert head_uncertainty(np.array([[0.5, 0.5, 0.0]]), "margin").tolist() == [1.0]
    assert head_uncertainty(np.full((1, 4), 0.25), "entropy") == pytest.approx([1.0])


def place_vote_by_hand(photos: pl.DataFrame, photo_id: int) -> str | None:
    """same_place's rule from the definition: the other gold labels at the photo's place,
    the most common one (ties: by name) if it has at least 3 photos and a 60 % share."""
    (place,) = photos.filter(pl.col("photo_id") == photo_id)["location_name"]
    others = photos.filter(
        (pl.col("photo_id") != photo_id)
        & (pl.col("location_name") == place)
        & pl.col("gold_label").is_not_null()
    )["gold_label"].to_list()
    if place is None or len(others) < 3:
        return None
    best = min(set(others), key=lambda label: (-others.count(label), label))
    return best if others.count(best) / len(others) >= 0.6 else None


def test_place_counts_leave_out_the_photo_itself_and_follow_the_hand_rule() -> None:
    rng = np.random.default_rng(7)
    n = 400
    places = rng.choice(["a", "b", "c", "d", None], n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    # place "a" leans to circle (a clear majority), the others are mixed and tie often
    labels = [
        (
            rng.choice(CONTENT_CLASSES, p=[0.8, 0.1, 0.05, 0.05])
            if p == "a"
            else rng.choice(CONTENT_CLASSES)
        )
        if rng.random() < 0.5
        else None
        for p in places
    ]
    photos = pl.DataFrame(
        {"photo_id": np.arange(n), "location_name": places, "gold_label": labels},
        schema={"photo_id": pl.Int64, "location_name": pl.String, "gold_label": pl.String},
    )
    counted = with_place_counts(photos)
    assert counted.height == n and counted["photo_id"].to_list() == list(range(n))
    votes = [same_place(row) for row in counted.iter_rows(named=True)]
    assert votes == [place_vote_by_hand(photos, i) for i in range(n)]
    assert "circle" in votes and None in votes, "both a majority and abstentions occur"
    first = counted.row(0, named=True)
    assert sum(first["place_counts"].values()) == (
        photos.filter(
            (pl.col("location_name") == places[0]) & pl.col("gold_label").is_not_null()
        ).height
        - (labels[0] is not None)
    )


@pytest.mark.speed
def test_label_votes_are_computed_again_only_for_photos_whose_row_changed() -> None:
    """A rerun applies the labeling functions to new and changed photos only, and the
    matrix is the one applying them to every photo gives; other functions' code (another
    digest) or a stored vote of a class the vocabulary lacks means applying them again."""
    seen: list[int] = []

    def keyword(photo: dict) -> str | None:
        seen.append(photo["photo_id"])
        return "circle" if "ring" in photo["title"] else None

    def every_third(photo: dict) -> str | None:
        return "square" if photo["photo_id"] % 3 == 0 else None

    functions = {"keyword": keyword, "every_third": every_third}
    names = list(functions)
    photos = pl.DataFrame(
        {
            "photo_id": list(range(40)),
            "title": [f"ring {i}" if i % 2 else f"box {i}" for i in range(40)],
            "gold_label": [None] * 40,
        },
        schema={"photo_id": pl.Int64, "title": pl.String, "gold_label": pl.String},
    )
    inputs = input_digests(photos, "functions v1")
    matrix = label_matrix(photos, functions)
    model = fit_generative(matrix, len(CONTENT_CLASSES))
    stored = weak_label_rows(photos, names, matrix, model, "majority", inputs)

    later = pl.concat(
        [
            photos.filter(pl.col("photo_id") != 10).with_columns(
                title=pl.when(pl.col("photo_id") == 7).then(pl.lit("box 7")).otherwise("title")
            ),
            pl.DataFrame({"photo_id": [60], "title": ["ring 60"], "gold_label": [None]}),
        ],
        how="vertical_relaxed",
    )
    seen.clear()
    expected = label_matrix(later, functions)
    assert sorted(seen) == later["photo_id"].to_list()
    seen.clear()
    reused, applied = label_matrix_reusing(
        later, functions, input_digests(later, "functions v1"), stored
    )
    assert (applied, seen) == (2, [7, 60])
    assert np.array_equal(reused, expected) and (expected == 1).any() and (expected == 0).any()

    seen.clear()
    _, applied = label_matrix_reusing(later, functions, input_digests(later, "v2"), stored)
    assert applied == later.height == len(seen)
    odd = stored.with_columns(
        keyword=pl.when(pl.col("photo_id") == 3).then(pl.lit("hexagon")).otherwise("keyword")
    )
    _, applied = label_matrix_reusing(later, functions, input_digests(later, "functions v1"), odd)
    assert applied == 3  # 7 and 60 as before, and 3


@pytest.mark.speed
def test_the_functions_digest_follows_their_modules_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constant beside a function (its keywords) changes the digest; a function whose
    source cannot be read (typed into a notebook) gives none, so nothing is reused."""
    import importlib

    module = tmp_path / "my_functions.py"
    module.write_text("WORDS = ('ring',)\ndef ringed(photo):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = importlib.import_module("my_functions")
    first = functions_digest({"ringed": mine.ringed})
    assert first is not None and first == functions_digest({"ringed": mine.ringed})
    module.write_text("WORDS = ('ring', 'disc')\ndef ringed(photo):\n    return None\n")
    assert functions_digest({"ringed": importlib.reload(mine).ringed}) not in (None, first)
    assert functions_digest(dict(LABELING_FUNCTIONS)) is not None
    typed: dict = {}
    exec("def typed_in(photo):\n    return None\n", typed)  # noqa: S102
    typed["typed_in"].__module__ = "__typed_in_a_notebook__"
    assert functions_digest({"typed_in": typed["typed_in"]}) is None


def test_the_generative_model_beats_majority_vote_when_one_function_is_noisy() -> None:
    rng = np.random.default_rng(0)
    rows, classes = 600, 3
    truth = rng.integers(0, classes, rows)

    def function(accuracy: float, coverage: float) -> np.ndarray:
        wrong = (truth + rng.integers(1, classes, rows)) % classes
        votes = np.where(rng.random(rows) < accuracy, truth, wrong)
        return np.where(rng.random(rows) < coverage, votes, ABSTAIN)

    matrix = np.stack([function(0.85, 0.6), function(0.8, 0.6), function(0.35, 1.0)], axis=1)
    _, majority = majority_vote(matrix, classes)
    model = fit_generative(matrix, classes)

    majority_accuracy = (majority.argmax(1) == truth).mean()
    model_accuracy = (model.posteriors.argmax(1) == truth).mean()
    assert model_accuracy >= majority_accuracy
    assert model_accuracy > 0.7
    estimated = model.accuracies()
    assert estimated[2] < min(estimated[0], estimated[1]), "the noisy function is trusted least"
    assert np.allclose(model.posteriors.sum(1), 1.0)


def test_weak_labels_tables_agree_with_their_label_matrix(built: Built) -> None:
    lake = LakeResource(root=str(built.lake))
    rows = lake.read("weak_labels").sort("photo_id")
    names = list(LABELING_FUNCTIONS)
    index = {label: i for i, label in enumerate(CONTENT_CLASSES)}
    matrix = np.array(
        [[ABSTAIN if v is None else index[v] for v in row] for row in rows.select(names).rows()]
    )
    gold = np.array([index.get(v, ABSTAIN) for v in rows["gold_label"].to_list()])
    expected = function_stats(matrix, gold)
    stats = lake.read("weak_label_stats").sort("function")
    by_name = dict(zip(names, expected, strict=True))
    for row in stats.iter_rows(named=True):
        assert row["coverage"] == pytest.approx(by_name[row["function"]].coverage)
        assert row["conflict"] == pytest.approx(by_name[row["function"]].conflict)
        assert row["accuracy"] == by_name[row["function"]].accuracy
    assert (matrix != ABSTAIN).any(), "the functions label something"
    probs = rows.select(f"p_{c}" for c in CONTENT_CLASSES).to_numpy()
    assert np.allclose(probs.sum(1), 1.0)


def test_training_can_use_confident_weak_labels(built: Built) -> None:
    lake = LakeResource(root=str(built.lake))
    gold = labelled_images(lake)
    weak = weak_labelled_images(lake, gold, min_confidence=0.0)
    assert weak.height > 0
    assert set(weak["photo_id"]).isdisjoint(gold["photo_id"])
    assert weak["style"].unique().to_list() == [UNKNOWN]
    assert not weak["held_out"].any()
    assert pl.concat([gold, weak], how="vertical_relaxed").height == gold.height + weak.height
    assert weak_labelled_images(lake, gold, min_confidence=1.01).is_empty()


# --- releases ----------------------------------------------------------------------


def test_a_release_pinned_before_a_source_change_loads_the_old_training_set(
    house: Lakehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = house.lake_resource
    before = training.load(split=None, as_polars=True, lake=lake)
    before_tensors = training.load(split="train", lake=lake).features.numpy().tobytes()
    assert main(["release", "create", "before-change"]) == 0
    assert main(["release", "create", "before-change"]) == 1
    assert "already exists" in capsys.readouterr().err

    photo_id = before["photo_id"][0]
    engine = sa.create_engine(house.db_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE photos SET title = title || ' at dusk' WHERE photo_id = :id"),
            {"id": photo_id},
        )
    engine.dispose()
    house.observe()
    house.materialize(FIRST, LAST, select=UPSTREAM | DOWNSTREAM)
    assert main(["release", "create", "after-change"]) == 0

    latest = training.load(split=None, as_polars=True, lake=lake)
    assert not latest.equals(before)
    pinned = training.load(split=None, as_polars=True, lake=lake, release="before-change")
    assert pinned.write_ipc(None).getvalue() == before.write_ipc(None).getvalue()
    pinned_tensors = training.load(release="before-change", lake=lake).features.numpy().tobytes()
    assert pinned_tensors == before_tensors

    conn = connect(lake=str(house.lake), release="before-change")
    from_sql = conn.sql("SELECT * FROM training_set ORDER BY photo_id").pl()
    instants = pl.col("posted_at").dt.epoch("us")  # DuckDB names the zone Etc/UTC
    assert from_sql.with_columns(instants).equals(
        before.select(from_sql.columns).with_columns(instants)
    )
    tables = {
        row[0]
        for row in conn.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert tables == {
        t for t in find_release(lake, "before-change").versions if not t.startswith("_")
    }

    diff = {row["table"]: row for row in release_diff(lake, "before-change", "after-change")}
    assert diff["raw_photos"]["rows_changed"] == 1
    assert diff["training_set"]["version_b"] > diff["training_set"]["version_a"]
    assert diff["photo_features"]["rows_changed"] == 1  # its title_length
    # the input versions are in the commit, not the rows: only that photo's row changed
    assert diff["training_set"]["rows_changed"] == 1
    assert diff["training_set"]["rows_added"] == diff["training_set"]["rows_removed"] == 0
    assert diff["raw_users"]["version_a"] == diff["raw_users"]["version_b"]
    assert diff["raw_users"]["rows_changed"] == 0

    capsys.readouterr()
    assert main(["release", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["release"] for r in listed] == ["before-change", "after-change"]
    assert main(["release", "diff", "before-change", "after-change"]) == 0
    assert "release diff: " in capsys.readouterr().err  # progress (plain lines off a tty)
    assert main(["release", "diff", "before-change", "nope"]) == 1
    assert "no release 'nope'" in capsys.readouterr().err


def test_the_nightly_run_creates_a_release_after_popularity_model(house: Lakehouse) -> None:
    result = house.materialize(FIRST, LAST, select={"popularity_model"})
    run = house.instance.get_run_by_id(result.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name="nightly_release",
        dagster_event=result.get_run_success_event(),
        dagster_instance=house.instance,
        dagster_run=run,
        resources={"lake": house.lake_resource},
    )
    assert "created release" in nightly_release(context).skip_message
    (release,) = list_releases(house.lake_resource)
    assert re.fullmatch(r"nightly-\d{4}-\d{2}-\d{2}", release.name)
    assert release.versions["popularity_model"] == house.lake_resource.version("popularity_model")
    assert "exists already" in nightly_release(context).skip_message
    scheduled = {"dagster/scheduled_execution_time": "2026-11-26T02:00:00+00:00"}
    assert nightly_release_name(scheduled, datetime.now(UTC)) == "nightly-2026-11-26"


def test_import_into_a_postgres_metadata_db(tmp_path: Path, postgres_db: str) -> None:
    url = postgres_db  # a database of its own on the session's server (conftest)
    generate_world(tmp_path, url, photos=12, users=3, days=3, seed=1)
    database = MetadataDbResource(url=url)
    labelled = set(database.read_table("photo_labels")["photo_id"].to_list())
    photo_id = min(set(database.read_table("photos")["photo_id"].to_list()) - labelled)
    export = [
        {
            "data": {"photo_id": photo_id},
            "annotations": [annotation(BOB, "triangle", "gray", "2026-11-20T09:00:00Z")],
        }
    ]
    import_annotations(database, json.dumps(export))
    with pytest.raises(LabelImportError):
        import_annotations(database, json.dumps([{**export[0], "data": {"photo_id": -5}}]))
    rows = database.read_table("photo_labels")
    checked = validate_labels(rows, pl.Series([photo_id, *labelled]))
    assert checked.rejected.is_empty()
    new = checked.accepted.filter(pl.col("photo_id") == photo_id)
    assert new.select("content_label", "style_label", "labeled_by", "labeled_at").row(0) == (
        "triangle",
        "gray",
        "user-2",
        datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
    )
    assert rows.height == len(labelled) + 1
