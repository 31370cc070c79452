"""The Label Studio round trip against the real tool (1.23.2, started on loopback).

`labels push` creates the project from our config, connects the photo store and sends
the most uncertain photos with predictions; two annotators (created through the users
API) and the admin answer: agreement, a 2:1 conflict, a tie, a skip, one answer later
deleted. `labels pull` imports the cumulative export; a later round that turns a label
into a tie (or deletes its only answer) removes it, and the lake recomputes only those
rows. Bad input (server down, token refused, another project, another config, the
JSON_MIN and CSV exports, pre-1.0 `completions`) is one line and writes nothing. The
token appears in no output, database or lake file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from lakehouse.cli.main import main
from lakehouse.demo.world import generate_world
from lakehouse.labels.studio import label_config
from lakehouse.labels.studio_api import (
    DEFAULT_PROJECT,
    StudioClient,
    StudioError,
    config_difference,
)
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES
from lakehouse_tests.conftest import RAW_LAYER, Lakehouse
from lakehouse_tests.servers.label_studio import ADMIN, Studio, label_studio
from lakehouse_tests.servers.postgres import free_port
from lakehouse_tests.test_flywheel import SEEDED_MODEL, seed_photo_classes

pytestmark = pytest.mark.clients

TOKEN = "ls-token-sentinel-4b9e2c71"
WORLD = {"photos": 40, "users": 8, "days": 3, "seed": 7}
FIRST, LAST = "2026-10-01", "2026-10-03"
LABEL_LAYER = RAW_LAYER | {"label_queue"}
OURS_PLUS = """<View>
  <Image name="image" value="$image"/>
  <Choices name="content" toName="image" choice="single">{content}</Choices>
  <Choices name="style" toName="image" choice="single">{style}</Choices>
  <TextArea name="comment" toName="image"/>
  <Rating name="quality" toName="image" maxRating="5"/>
</View>"""
OTHER_CONFIG = """<View><Image name="image" value="$image"/>
  <Choices name="label" toName="image"><Choice value="cat"/><Choice value="dog"/></Choices>
</View>"""


@dataclass
class Live:
    studio: Studio
    house: Lakehouse


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One Label Studio for the module (started while the lake is built) and a small lake
    with label_queue; its document root is the photo store."""
    root = tmp_path_factory.mktemp("clients")
    sources = root / "sources"
    sources.mkdir()
    with label_studio(root / "label-studio", sources, TOKEN) as studio:
        generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", **WORLD)
        house = Lakehouse(sources=sources, lake=root / "lake")
        house.observe()
        house.materialize(FIRST, LAST, select=RAW_LAYER | {"images"})
        seed_photo_classes(house.lake_resource)
        house.materialize(FIRST, LAST, select={"label_queue"})
        studio.wait_until_up()
        yield Live(studio, house)


def point_at(monkeypatch: pytest.MonkeyPatch, house: Lakehouse, studio: Studio) -> None:
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(house.sources))
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(house.lake))
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", house.db_url)
    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.delenv("LABEL_STUDIO_PROJECT", raising=False)


@pytest.fixture
def copy(live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lakehouse:
    """A private copy of the module's sources and lake; the CLI points at it."""
    shutil.copytree(live.house.sources, tmp_path / "sources")
    shutil.copytree(live.house.lake, tmp_path / "lake")
    house = Lakehouse(sources=tmp_path / "sources", lake=tmp_path / "lake")
    point_at(monkeypatch, house, live.studio)
    return house


def labels(house: Lakehouse) -> dict[int, dict]:
    engine = sa.create_engine(house.db_url)
    try:
        with engine.connect() as connection:
            rows = pl.read_database("SELECT * FROM photo_labels", connection)
    finally:
        engine.dispose()
    return {row["photo_id"]: row for row in rows.iter_rows(named=True)}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project_named(studio: Studio, title: str) -> dict:
    projects = studio.call("GET", "/api/projects/?page_size=100")["results"]
    (project,) = [p for p in projects if p["title"] == title]
    return project


def export(studio: Studio, project_id: int, kind: str = "JSON") -> str:
    path = f"/api/projects/{project_id}/export?exportType={kind}&download_all_tasks=true"
    return studio.get_bytes(path).decode()


def answer(
    studio: Studio, task_id: int, user: int, content: str, style: str, **extra: object
) -> dict:
    """Post one annotation for `user` (the admin may post on an annotator's behalf)."""
    result = [
        {"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [value]}}
        for name, value in (("content", content), ("style", style))
    ]
    body = {"completed_by": user, "result": result, **extra}
    return studio.call("POST", f"/api/tasks/{task_id}/annotations/", body)


def user(studio: Studio, email: str) -> int:
    return studio.call("POST", "/api/users/", {"email": email, "username": email.split("@")[0]})[
        "id"
    ]


def at(annotation: dict) -> str:
    """How photo_labels stores an annotation's own time (seconds, UTC offset)."""
    return datetime.fromisoformat(annotation["created_at"]).isoformat(timespec="seconds")


def last_commit(house: Lakehouse, table: str) -> dict:
    return DeltaTable(str(house.lake / table)).history(1)[0]


def test_push_and_pull_follow_the_annotators_last_word(
    live: Live, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    studio, house = live.studio, live.house
    point_at(monkeypatch, house, studio)
    outputs = []

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        out, err = capfd.readouterr()
        outputs.append(out + err)
        return out

    printed = run("labels", "push", "--n", "5")
    project = project_named(studio, DEFAULT_PROJECT)
    assert f"project '{DEFAULT_PROJECT}' (created), id {project['id']}" in printed
    assert config_difference(project["label_config"]) == ""
    (storage,) = studio.call("GET", f"/api/storages/localfiles/?project={project['id']}")
    assert storage["path"] == str(house.sources / "photos")
    queue = house.lake_resource.read("label_queue").sort(
        "uncertainty", "photo_id", descending=[True, False]
    )
    tasks = json.loads(export(studio, project["id"]))
    ids = queue["photo_id"].head(5).to_list()
    assert sorted(t["data"]["photo_id"] for t in tasks) == sorted(ids), "the most uncertain"
    for task in tasks:
        photo = queue.filter(pl.col("photo_id") == task["data"]["photo_id"]).row(0, named=True)
        image = studio.get_bytes(task["data"]["image"])  # local files serving, storage connected
        assert image == (house.sources / photo["object_key"]).read_bytes()
    detail = studio.call("GET", f"/api/tasks/{tasks[0]['id']}")
    (prediction,) = detail["predictions"]
    assert prediction["model_version"] == SEEDED_MODEL
    assert {r["from_name"] for r in prediction["result"]} == {"content", "style"}

    printed = run("labels", "push", "--n", "3")
    assert "sent 3 tasks (5 already in the project)" in printed
    assert "(unchanged)" in printed and "local files" in printed and "(present)" in printed

    task_of = {t["data"]["photo_id"]: t["id"] for t in tasks}
    agree, conflict, tie, skip, deleted = ids
    admin = studio.call("GET", "/api/current-user/whoami")["id"]
    ann, bob = user(studio, "ann@example.com"), user(studio, "bob@example.com")
    agreed = [answer(studio, task_of[agree], who, "circle", "gray") for who in (ann, bob)]
    answer(studio, task_of[conflict], ann, "square", "blurred")
    answer(studio, task_of[conflict], bob, "triangle", "blurred")
    third = answer(studio, task_of[conflict], admin, "square", "blurred")
    assert (agreed[0]["completed_by"], third["completed_by"]) == (ann, admin), "posted as them"
    answer(studio, task_of[tie], ann, "stripes", "high_contrast")
    answer(studio, task_of[tie], bob, "circle", "high_contrast")
    answer(studio, task_of[skip], ann, "circle", "gray", was_cancelled=True)
    only = answer(studio, task_of[deleted], bob, "triangle", "gray")

    printed = run("labels", "pull")
    assert (
        f"labelled 3 photos: {', '.join(map(str, sorted([agree, conflict, deleted])))}" in printed
    )
    assert f"tie, left unlabelled: photo {tie} content (circle: 1, stripes: 1)" in printed
    found = labels(house)
    assert {k: found[agree][k] for k in ("content_label", "style_label", "labeled_by")} == {
        "content_label": "circle",
        "style_label": "gray",
        "labeled_by": "ann@example.com,bob@example.com",
    }
    assert found[agree]["labeled_at"] == max(at(a) for a in agreed)
    assert found[conflict]["content_label"] == "square"
    assert found[conflict]["labeled_by"] == f"{ADMIN},ann@example.com"
    assert found[deleted]["labeled_by"] == "bob@example.com"
    assert tie not in found and skip not in found

    # an admin marking ground truth moves updated_at; the label keeps the answer's own time
    studio.call("PATCH", f"/api/annotations/{agreed[0]['id']}/", {"ground_truth": True})
    run("labels", "pull")
    assert labels(house)[agree]["labeled_at"] == found[agree]["labeled_at"]

    house.observe()
    house.materialize(FIRST, LAST, select=LABEL_LAYER)
    before = house.table_versions()

    # round two: a fourth voice turns the 2:1 into a tie; the only answer of another goes
    carol = user(studio, "carol@example.com")
    answer(studio, task_of[conflict], carol, "triangle", "blurred")
    studio.call("DELETE", f"/api/annotations/{only['id']}/")
    printed = run("labels", "pull")
    assert f"labelled 1 photos: {agree}" in printed
    removed = sorted([conflict, deleted])
    assert f"Label Studio label removed: photos {', '.join(map(str, removed))}" in printed
    after = labels(house)
    assert conflict not in after and deleted not in after
    assert {k: v for k, v in after.items() if k != agree} == {
        k: v for k, v in found.items() if k not in (agree, conflict, deleted)
    }, "labels from other sources untouched"

    house.observe()
    house.materialize(FIRST, LAST, select=LABEL_LAYER)
    versions = house.table_versions()
    changed = {name for name in versions if versions[name] != before.get(name)}
    assert changed == {"raw_photo_labels", "label_queue"}
    metrics = last_commit(house, "raw_photo_labels")["operationMetrics"]
    assert (metrics["num_target_rows_deleted"], metrics["num_target_rows_inserted"]) == (2, 0)
    assert metrics["num_target_rows_updated"] == 0
    metrics = last_commit(house, "label_queue")["operationMetrics"]
    assert (metrics["num_target_rows_inserted"], metrics["num_target_rows_deleted"]) == (2, 0)
    assert metrics["num_target_rows_updated"] == 0
    back = house.lake_resource.read("label_queue")["photo_id"].to_list()
    assert set(removed) <= set(back), "unlabelled photos return to the queue"

    out, err = capfd.readouterr()
    outputs.append(out + err)
    assert not [text for text in outputs if TOKEN in text], "the token in output"
    assert TOKEN.encode() not in (house.sources / "metadata.db").read_bytes()
    for path in house.lake.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def one_line_error(capfd: pytest.CaptureFixture[str], *parts: str) -> str:
    out, err = capfd.readouterr()
    assert err.startswith("lakehouse: error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, (part, err)
    assert TOKEN not in out + err
    return err


def unchanged(house: Lakehouse) -> tuple[str, dict]:
    return sha256_file(house.sources / "metadata.db"), house.table_versions()


def test_a_server_down_or_a_refused_token_is_one_line_and_writes_nothing(
    live: Live, copy: Lakehouse, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    before = unchanged(copy)
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    for command in ("pull", "push"):
        assert main(["labels", command]) == 1
        one_line_error(capfd, "is not answering", "make label-studio")
    monkeypatch.setenv("LABEL_STUDIO_URL", live.studio.url)
    wrong = "wrong-token-sentinel-0c51"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", wrong)
    for command in ("pull", "push"):
        assert main(["labels", command]) == 1
        assert wrong not in one_line_error(capfd, "refused the token in LABEL_STUDIO_API_KEY")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    assert main(["labels", "pull"]) == 1
    one_line_error(capfd, "LABEL_STUDIO_API_KEY is not set")
    assert unchanged(copy) == before


def new_project(studio: Studio, title: str, config: str, tasks: list[dict]) -> dict:
    project = studio.call("POST", "/api/projects/", {"title": title, "label_config": config})
    studio.call("POST", f"/api/projects/{project['id']}/import", tasks)
    project["tasks"] = json.loads(export(studio, project["id"]))
    return project


def test_another_project_or_config_is_one_line_and_writes_nothing(
    live: Live, copy: Lakehouse, capfd
) -> None:
    studio = live.studio
    before = unchanged(copy)
    foreign = new_project(
        studio,
        "someone else's photos",
        label_config(),
        [{"data": {"image": "x", "photo_id": 98765}}],
    )
    answer(studio, foreign["tasks"][0]["id"], 1, "circle", "gray")
    assert main(["labels", "pull", "--project", "someone else's photos"]) == 1
    one_line_error(capfd, "98765", "not in the photos table", "another project")

    new_project(studio, "cats and dogs", OTHER_CONFIG, [{"data": {"image": "x", "photo_id": 1}}])
    assert main(["labels", "pull", "--project", "cats and dogs"]) == 1
    one_line_error(capfd, "another labeling config", "no Choices named content, style")
    assert main(["labels", "pull", "--project", "no such project"]) == 1
    one_line_error(capfd, "has no project 'no such project'", "labels push")
    assert unchanged(copy) == before


def test_other_export_formats_and_controls(
    live: Live, copy: Lakehouse, tmp_path: Path, capfd
) -> None:
    """A project with our questions plus a comment box and a rating: their answers are
    ignored and counted; its JSON_MIN and CSV exports are refused naming JSON."""
    studio = live.studio
    config = OURS_PLUS.format(
        content="".join(f'<Choice value="{c}"/>' for c in CONTENT_CLASSES),
        style="".join(f'<Choice value="{s}"/>' for s in STYLES),
    )
    photo = copy.lake_resource.read("label_queue").sort("photo_id").row(-1, named=True)
    image = f"/data/local-files/?d={quote(photo['object_key'])}"
    project = new_project(
        studio, "with comments", config, [{"data": {"image": image, "photo_id": photo["photo_id"]}}]
    )
    result = [
        {"from_name": "content", "to_name": "image", "type": "choices",
         "value": {"choices": ["square"]}},
        {"from_name": "style", "to_name": "image", "type": "choices",
         "value": {"choices": ["gray"]}},
        {"from_name": "comment", "to_name": "image", "type": "textarea",
         "value": {"text": ["a fine square"]}},
        {"from_name": "quality", "to_name": "image", "type": "rating", "value": {"rating": 4}},
    ]  # fmt: skip
    studio.call("POST", f"/api/tasks/{project['tasks'][0]['id']}/annotations/", {"result": result})
    before = unchanged(copy)
    for kind, name in (("JSON_MIN", "JSON_MIN"), ("CSV", "CSV")):
        path = tmp_path / f"export.{kind.lower()}"
        path.write_text(export(studio, project["id"], kind))
        assert main(["labels", "import", str(path)]) == 1
        one_line_error(capfd, name, "export the project as JSON instead")
    old = [{"id": 1, "data": {"photo_id": photo["photo_id"]}, "completions": [{"result": result}]}]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert main(["labels", "import", str(path)]) == 1
    one_line_error(capfd, "`completions`", "before 1.0", "export it as JSON")
    assert unchanged(copy) == before

    assert main(["labels", "pull", "--project", "with comments"]) == 0
    printed = capfd.readouterr().out
    assert f"labelled 1 photos: {photo['photo_id']}" in printed
    assert "ignored 1 answer(s) of a control we do not read: comment (textarea)" in printed
    assert "ignored 1 answer(s) of a control we do not read: quality (rating)" in printed
    assert labels(copy)[photo["photo_id"]]["labeled_by"] == ADMIN


def test_a_personal_access_token_opens_it_too(
    live: Live, copy: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokens users copy from Label Studio 1.23 are personal access tokens (JWT
    refresh tokens): the client trades one for an access token."""
    personal = live.studio.call("POST", "/api/token/")["token"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", personal)
    client = StudioClient.from_environment()
    assert client.users()[1] == ADMIN
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", personal[:-4] + "AAAA")
    with pytest.raises(StudioError, match="refused the personal access token"):
        StudioClient.from_environment().users()


def file_export(tasks: dict[int, list[tuple[int, str, str]]]) -> str:
    """A JSON export by file: per photo, (user id, content, style) answers."""
    return json.dumps(
        [
            {
                "id": photo_id,
                "data": {"photo_id": photo_id},
                "annotations": [
                    {
                        "id": 100 * photo_id + number,
                        "completed_by": who,
                        "result": [
                            {
                                "from_name": "content",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": [content]},
                            },
                            {
                                "from_name": "style",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": [style]},
                            },
                        ],  # fmt: skip
                        "was_cancelled": False,
                        "created_at": f"2026-11-20T10:0{number}:00Z",
                        "updated_at": f"2026-11-20T10:0{number}:00Z",
                    }
                    for number, (who, content, style) in enumerate(answers)
                ],
            }
            for photo_id, answers in tasks.items()
        ]
    )


def test_a_later_tie_in_a_file_export_unlabels_only_what_label_studio_gave(
    lakehouse: Lakehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """No server: the same rule for `labels import`. A photo labelled by another source
    (no `labeled_by`) keeps its label through a tie; one labelled by an import loses it."""
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", lakehouse.db_url)
    before = labels(lakehouse)
    other = min(before)  # the world's label, from another source
    engine = sa.create_engine(lakehouse.db_url)
    with engine.connect() as connection:
        photos = [row[0] for row in connection.execute(sa.text("SELECT photo_id FROM photos"))]
    engine.dispose()
    fresh = min(set(photos) - set(before))
    path = tmp_path / "export.json"
    agree = [(1, "circle", "gray"), (2, "circle", "gray")]
    split = [(1, "circle", "gray"), (2, "square", "gray")]

    path.write_text(file_export({fresh: agree, other: split}))
    assert main(["labels", "import", str(path)]) == 0
    out, err = capfd.readouterr()
    assert f"labelled 1 photos: {fresh}" in out and "removed" not in out
    assert "reading the export: 2 tasks" in err, "the progress line"
    assert labels(lakehouse)[other] == {**before[other], "labeled_by": None}
    assert labels(lakehouse)[fresh]["labeled_by"] == "user-1,user-2"

    path.write_text(file_export({fresh: [*agree, (3, "square", "gray"), (4, "square", "gray")]}))
    assert main(["labels", "import", str(path)]) == 0
    assert f"Label Studio label removed: photos {fresh}" in capfd.readouterr().out
    after = labels(lakehouse)
    assert fresh not in after
    assert {k: {**v, "labeled_by": None} for k, v in after.items()} == {
        k: {**v, "labeled_by": None} for k, v in before.items()
    }, "every other label as it was"
