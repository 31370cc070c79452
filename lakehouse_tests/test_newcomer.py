"""The first hour of a new user: the README's commands as written, day 0 without labels,
one line for every wrong setting, labels that survive `make demo`, a classifier that
says how it is doing and stops when it stops improving."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.cli.main import main
from lakehouse.lake import LakeResource
from lakehouse.models.popularity import RidgeModel
from lakehouse.models.registry import CLASSIFIERS, POPULARITY_MODELS
from lakehouse.settings import PROJECT_ROOT
from lakehouse_tests.conftest import DemoLake, project_instance

pytestmark = pytest.mark.newcomer

BIN = Path(sys.executable).parent
README = PROJECT_ROOT / "README.md"
# A world with enough days for complete 7-day like windows, so training_set has rows.
DAY_ZERO_WORLD = ["--photos", "40", "--users", "8", "--days", "12", "--seed", "7"]


def readme_blocks(section: str, language: str = "sh") -> list[list[str]]:
    """The commands of each fenced `language` block under the README heading `section`
    (up to the next heading of its level or above): comments dropped, continued lines
    joined, as a shell would read them."""
    blocks: list[list[str]] = []
    level, fence, block = 0, None, []
    for line in README.read_text().splitlines():
        if fence is None and (heading := re.match(r"(#+) (.*)", line)):
            if heading.group(2).strip() == section:
                level = len(heading.group(1))
            elif level and len(heading.group(1)) <= level:
                break
        elif line.startswith("```"):
            if fence is None:
                fence, block = line[3:].strip(), []
            else:
                if level and fence == language:
                    joined = "\n".join(block).replace("\\\n", " ")
                    blocks.append([c for c in map(strip_comment, joined.splitlines()) if c])
                fence = None
        elif fence is not None:
            block.append(line)
    assert blocks, f"no {language} block under {section!r} in README.md"
    return blocks


def strip_comment(line: str) -> str:
    """The line without a whole-line comment or a trailing one set off by spaces."""
    return "" if line.lstrip().startswith("#") else re.sub(r"\s{2,}#.*$", "", line).strip()


def shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def make(target: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`make TARGET` of this project from `cwd` (its instance directory), with this
    interpreter's venv and no reinstall."""
    return shell(
        f"make --no-print-directory -f {PROJECT_ROOT / 'Makefile'} -o install "
        f"VENV={sys.prefix} {target}",
        env,
        cwd,
    )


# --- README -------------------------------------------------------------------------


def test_the_readme_links_stay_inside_the_repository() -> None:
    for target in re.findall(r"\]\(([^)#]+)", README.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        resolved = (PROJECT_ROOT / target).resolve()
        assert resolved.is_relative_to(PROJECT_ROOT) and resolved.exists(), target


def test_the_readme_query_and_release_commands_work_on_a_fresh_demo(
    demo_lake: DemoLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(demo_lake.lakehouse.lake, lake)  # `release create` writes a table
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(lake))
    commands = (
        readme_blocks("Querying the lake")[0] + readme_blocks("Weak supervision and releases")[0]
    )
    assert any(c.startswith("lakehouse diff") for c in commands)
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "lakehouse", command
        status = main(words[1:])  # the console script's entry point, in this process
        out, err = capsys.readouterr()
        assert status == 0, f"{command}\n{err}"
        assert out.strip(), command


# --- day 0, then labels -------------------------------------------------------------


@pytest.fixture
def day_zero(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A world with photos, rows and logs but no labels, an instance dir and a lake path."""
    sources = tmp_path / "sources"
    env = {
        "LAKEHOUSE_SOURCES": str(sources),
        "LAKEHOUSE_METADATA_DB": f"sqlite:///{sources / 'metadata.db'}",
        "LAKEHOUSE_LAKE": str(tmp_path / "lake"),
    }
    done = shell(f"lakehouse demo-data {' '.join(DAY_ZERO_WORLD)}", env, tmp_path)
    assert done.returncode == 0, done.stderr
    project_instance(tmp_path)
    return env, tmp_path


def test_day_zero_materializes_everything_then_imported_labels_train_the_classifier(
    day_zero: tuple[dict[str, str], Path],
) -> None:
    env, home = day_zero
    db = home / "sources" / "metadata.db"
    with sqlite3.connect(db) as connection:
        truth = connection.execute(
            "SELECT photo_id, content_label, style_label FROM photo_labels"
        ).fetchall()
        connection.execute("DELETE FROM photo_labels")
    connection.close()
    lake = LakeResource(root=env["LAKEHOUSE_LAKE"])

    first = make("materialize", env, home)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-5000:]
    assert "SupersessionWarning" not in output
    assert " - DEBUG - " not in output
    assert "no model yet: 0 labelled photos, 10 needed" in output
    assert not retried_steps(home)
    assert lake.version("style_content_classifier") is None  # no model registered
    assert lake.row_count("photo_classes") == 0
    queue = lake.read("label_queue")
    assert queue.height >= 30 and set(queue["strategy"]) == {"diversity"}  # 40 photos, no labels
    assert lake.row_count("training_set") > 0
    popularity = POPULARITY_MODELS.current(lake)
    model = RidgeModel.from_bytes(lake.get_object(str(popularity["weights_key"])))
    assert not model.with_classifier and not any("_p_" in c for c in model.columns)

    # The first labels: export the queue, answer it as Label Studio would, import.
    tasks_path = home / "tasks.json"
    exported = shell(f"lakehouse labels export --n 100 --out {tasks_path}", env, home)
    assert exported.returncode == 0, exported.stderr
    answers = {photo_id: (content, style) for photo_id, content, style in truth}
    export = [
        {
            **task,
            "annotations": [
                {
                    "id": i,
                    "completed_by": 1,
                    "result": [
                        {
                            "from_name": name,
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": [choice]},
                        }
                        for name, choice in zip(
                            ("content", "style"), answers[task["data"]["photo_id"]], strict=True
                        )
                    ],
                    "was_cancelled": False,
                    "created_at": "2026-11-20T10:00:00Z",
                    "updated_at": "2026-11-20T10:00:00Z",
                }
            ],
        }
        for i, task in enumerate(json.loads(tasks_path.read_text()))
        if task["data"]["photo_id"] in answers
    ]
    (home / "export.json").write_text(json.dumps(export))
    imported = shell(f"lakehouse labels import {home / 'export.json'}", env, home)
    assert imported.returncode == 0, imported.stderr

    # The next run, the README's CI recipe with the older dagster commands, as written.
    second = shell("\n".join(readme_blocks("In CI")[1]), env, home)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    classifier = CLASSIFIERS.current(lake)
    assert classifier["train_photos"] > 0 and classifier["held_out_photos"] > 0
    assert lake.row_count("photo_classes") == lake.row_count("images")
    assert set(lake.read("label_queue")["strategy"]) == {"margin"}


def retried_steps(home: Path) -> list[str]:
    """Steps of any run in the instance under `home` that were retried."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs(), f"no run in the instance under {home}"
        return [
            str(entry.step_key)
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None
            and entry.dagster_event.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_RESTARTED")
        ]


# --- wrong settings -----------------------------------------------------------------

NOWHERE = "/nonexistent/lakehouse-newcomer"
LAKE_READERS = [
    ["tables"],
    ["sql", "SELECT 1 AS one"],
    ["history", "raw_photos"],
    ["diff", "raw_photos", "0", "1"],
    ["summary"],
    ["release", "list"],
]


@pytest.mark.parametrize("args", LAKE_READERS, ids=lambda args: args[0])
def test_a_missing_lake_is_one_line_and_exit_1(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("LAKEHOUSE_LAKE", NOWHERE)
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert (
        err == f"lakehouse: error: LAKEHOUSE_LAKE={NOWHERE!r}: no such directory "
        "(run `make demo`, or point it at your lake)\n"
    )
    assert out == ""


@pytest.mark.parametrize(
    ("variable", "value", "args", "named"),
    [
        ("LAKEHOUSE_SOURCES", NOWHERE, ["log-range"], f"LAKEHOUSE_SOURCES={NOWHERE!r}"),
        ("LAKEHOUSE_ENV", "staging", ["settings"], "LAKEHOUSE_ENV='staging'"),
        ("LAKEHOUSE_LOGS_END", "soon", ["settings"], "LAKEHOUSE_LOGS_END='soon'"),
    ],
)
def test_a_wrong_setting_is_one_line_and_exit_1(
    variable: str, value: str, args: list[str], named: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(args) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"lakehouse: error: {named}")


def test_settings_mask_passwords(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", "postgresql+psycopg2://ann:s3cret@db:5432/ops")
    assert main(["settings"]) == 0
    out, _ = capsys.readouterr()
    assert "LAKEHOUSE_METADATA_DB=postgresql+psycopg2://ann:***@db:5432/ops" in out
    assert "s3cret" not in out


def test_dagster_commands_and_make_instance_say_a_wrong_setting_in_one_line(
    tmp_path: Path,
) -> None:
    project_instance(tmp_path)
    launched = shell(
        "dg launch -m lakehouse.definitions --job observe_sources",
        {"LAKEHOUSE_ENV": "staging", "DAGSTER_HOME": str(tmp_path)},
        tmp_path,
    )
    assert launched.returncode == 1
    assert launched.stderr.strip().splitlines() == [
        "lakehouse: error: LAKEHOUSE_ENV='staging': expected one of local, production"
    ]
    production = {
        "LAKEHOUSE_ENV": "production",
        "LAKEHOUSE_METADATA_DB": "postgresql+psycopg2://ann:s3cret@db:5432/ops",
        **{name: "" for name in ("LAKEHOUSE_SOURCES", "LAKEHOUSE_LAKE", "DAGSTER_HOME")},
    }
    instance = make("instance", production, tmp_path)
    ours = [line for line in instance.stderr.splitlines() if line.startswith("lakehouse:")]
    assert instance.returncode == 2 and "Traceback" not in instance.stderr  # make's status
    assert len(ours) == 1 and "needs these variables set: LAKEHOUSE_SOURCES" in ours[0]
    assert "s3cret" not in instance.stdout + instance.stderr
    (makes,) = [line for line in instance.stderr.strip().splitlines() if line not in ours]
    assert re.match(r"make(\[\d+\])?: \*\*\* ", makes) and makes.endswith("Error 1"), makes


# --- output -------------------------------------------------------------------------


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    done = shell(
        "lakehouse sql 'SELECT * FROM range(200000)' --format csv | head -2",
        {"LAKEHOUSE_LAKE": str(tmp_path)},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["range", "0"]
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        ("table", "score\n-----\n0.64\n"),
        ("csv", "score\n0.64\n"),
        ("json", '[{"score": 0.6399999856948853}]'),
    ],
)
def test_floats_are_rounded_for_people_and_exact_in_json(
    fmt: str, shown: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(tmp_path))
    assert main(["sql", "SELECT 0.64::FLOAT AS score", "--format", fmt]) == 0
    out, _ = capsys.readouterr()
    assert shown in out


# --- the synthetic world keeps what users added -------------------------------------


def test_demo_data_again_keeps_imported_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    sources = tmp_path / "sources"
    monkeypatch.setenv("LAKEHOUSE_SOURCES", str(sources))
    monkeypatch.setenv("LAKEHOUSE_METADATA_DB", f"sqlite:///{sources / 'metadata.db'}")
    world = ["demo-data", "--photos", "30", "--users", "5", "--days", "3"]
    assert main(world) == 0
    with sqlite3.connect(sources / "metadata.db") as connection:
        labelled = {row[0] for row in connection.execute("SELECT photo_id FROM photo_labels")}
    connection.close()
    photo = min(set(range(1, 31)) - labelled)
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "data": {"photo_id": photo},
                    "annotations": [
                        {
                            "id": 1,
                            "completed_by": 7,
                            "result": [
                                {
                                    "from_name": "content",
                                    "to_name": "image",
                                    "type": "choices",
                                    "value": {"choices": ["square"]},
                                },
                                {
                                    "from_name": "style",
                                    "to_name": "image",
                                    "type": "choices",
                                    "value": {"choices": ["gray"]},
                                },
                            ],
                            "was_cancelled": False,
                            "created_at": "2026-11-20T10:00:00Z",
                            "updated_at": "2026-11-20T10:00:00Z",
                        }
                    ],
                }
            ]
        )
    )
    assert main(["labels", "import", str(export)]) == 0
    assert main(world) == 0  # make demo's world step, again
    with sqlite3.connect(sources / "metadata.db") as connection:
        kept = connection.execute(
            "SELECT content_label, style_label, labeled_by FROM photo_labels WHERE photo_id = ?",
            (photo,),
        ).fetchall()
        total = connection.execute("SELECT count(*) FROM photo_labels").fetchone()[0]
    connection.close()
    assert kept == [("square", "gray", "user-7")]
    assert total == len(labelled) + 1
    assert "kept_labels=1" in capsys.readouterr().out


# --- the classifier says how it is doing --------------------------------------------


def step_messages(demo_lake: DemoLake, step: str) -> list[str]:
    """What `step` logged, in order, over every run that built the session's demo lake."""
    instance = demo_lake.lakehouse.instance
    return [
        entry.user_message
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
        if entry.step_key == step and entry.user_message
    ]


def test_the_classifier_logs_each_epoch_and_stops_when_it_stops_improving(
    demo_lake: DemoLake,
) -> None:
    lines = step_messages(demo_lake, "style_content_classifier")
    epochs = [re.match(r"training: (\d+)/(\d+) epochs", line) for line in lines]
    numbers = [int(m.group(1)) for m in epochs if m]
    planned = {int(m.group(2)) for m in epochs if m}
    assert numbers == list(range(1, len(numbers) + 1)), lines
    assert len(planned) == 1 and len(numbers) < planned.pop()  # stopped early
    per_epoch = [line for line in lines if re.match(r"training: \d+/", line)]
    assert all(
        re.search(
            r"epochs/s, ETA \w+; loss [\d.]+, held-out accuracy content [\d.]+ style [\d.]+",
            line,
        )
        for line in per_epoch
    ), per_epoch
    assert any("stopped early" in line for line in lines)
    metrics = demo_lake.upstream_found["style_content_classifier"]
    assert metrics["content_accuracy"] >= 0.9 and metrics["style_accuracy"] >= 0.8
    losses = [float(re.search(r"loss ([\d.]+)", line).group(1)) for line in per_epoch]
    assert losses[-1] < losses[0]


@pytest.mark.living
def test_classification_logs_its_progress_with_rate_and_eta(demo_lake: DemoLake) -> None:
    lines = step_messages(demo_lake, "photo_classes")
    assert any(
        re.match(r"photo_classes: [\d,]+/[\d,]+ images \(\d+%\), [\d.,]+ images/s; batch 1", line)
        for line in lines
    ), lines
    assert any(re.match(r"photo_classes: [\d,]+ images in \w+", line) for line in lines), lines
