"""The skip policy, proven: under `CI=true` a missing server is a failure naming it, any
other skip (a new `pytest.skip`, a `skipif`) fails too, and only `gpu` tests may skip;
elsewhere a skip says what to install. Every test file goes through the one home
(`lakehouse_tests/servers/need.py`) to say what it needs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import lakehouse_tests.conftest as conftest
from lakehouse.settings import PROJECT_ROOT
from lakehouse_tests.servers import policy, postgres, redis
from lakehouse_tests.servers.need import need

pytestmark = pytest.mark.proof

TESTS = Path(__file__).parent
NEED = "a frobnicator server"
INSTALL = "apt-get install frobnicator"

# A throwaway test module: what a test file may do to say it cannot run here.
PROBES = f'''
import pytest
from lakehouse_tests.servers.need import need, skip_without_gpu

def test_needs_a_server():
    need("{NEED} not found", "{INSTALL}")

def test_plain_skip():
    pytest.skip("someone's new plain skip")

@pytest.mark.skipif(True, reason="someone's new skipif")
def test_skipif():
    pass

@pytest.fixture
def server():
    need("{NEED} not found", "{INSTALL}")

def test_needs_a_server_through_a_fixture(server):
    pass

@pytest.mark.gpu
def test_on_a_gpu():
    skip_without_gpu("a CUDA check")

def test_that_passes():
    pass
'''


def run_probes(tmp_path: Path, ci: bool, args: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """Run the probes in a fresh pytest with our skip policy plugged in (as conftest.py plugs
    it into the suite); per test, its outcome and message, from the JUnit XML."""
    (tmp_path / "test_probes.py").write_text(PROBES)
    report = tmp_path / ("ci.xml" if ci else "dev.xml")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if ci:
        env["CI"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", policy.__name__, "-p", "no:cacheprovider"]
        + ["--rootdir", str(tmp_path), "-c", os.devnull, f"--junitxml={report}", *args]
        + [str(tmp_path / "test_probes.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.exists(), done.stdout + done.stderr
    found = {}
    for case in ET.parse(report).iter("testcase"):
        outcome = next(
            (child for child in case if child.tag in ("failure", "error", "skipped")), None
        )
        if outcome is None:
            found[case.get("name")] = ("passed", "")
        else:
            found[case.get("name")] = (outcome.tag, f"{outcome.get('message')} {outcome.text}")
    return found


def test_under_ci_every_skip_but_gpu_is_a_failure_naming_what_is_missing(tmp_path: Path) -> None:
    found = run_probes(tmp_path, ci=True, args=("-n", "2", "--dist", "loadfile"))

    assert set(found) == {
        "test_needs_a_server",
        "test_plain_skip",
        "test_skipif",
        "test_needs_a_server_through_a_fixture",
        "test_on_a_gpu",
        "test_that_passes",
    }
    assert found["test_needs_a_server"][0] == "failure"
    assert NEED in found["test_needs_a_server"][1] and INSTALL in found["test_needs_a_server"][1]
    # a fixture's failure is reported as an error at set-up: still red, still named
    fixture = found["test_needs_a_server_through_a_fixture"]
    assert fixture[0] in ("failure", "error") and NEED in fixture[1] and INSTALL in fixture[1]
    for name, reason in (("test_plain_skip", "new plain skip"), ("test_skipif", "new skipif")):
        assert found[name][0] in ("failure", "error"), (name, found[name])
        assert policy.POLICY in found[name][1] and reason in found[name][1], found[name]
    assert found["test_on_a_gpu"][0] == "skipped"
    assert "CUDA is absent" in found["test_on_a_gpu"][1]
    assert found["test_that_passes"] == ("passed", "")


def test_outside_ci_a_missing_server_skips_saying_what_to_install(tmp_path: Path) -> None:
    found = run_probes(tmp_path, ci=False)

    assert found["test_needs_a_server"][0] == "skipped"
    assert NEED in found["test_needs_a_server"][1] and INSTALL in found["test_needs_a_server"][1]
    assert found["test_needs_a_server_through_a_fixture"][0] == "skipped"
    assert {found[name][0] for name in ("test_plain_skip", "test_skipif", "test_on_a_gpu")} == {
        "skipped"
    }
    assert found["test_that_passes"] == ("passed", "")


def test_the_suite_runs_under_the_policy() -> None:
    """conftest.py plugs in the very hooks the probes above were run with."""
    assert conftest.pytest_runtest_makereport is policy.pytest_runtest_makereport
    assert conftest.pytest_make_collect_report is policy.pytest_make_collect_report


def test_under_ci_a_missing_postgres_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real search (pg_config, Debian's folders, PATH) finds nothing: the server fixture's
    own start fails, naming PostgreSQL and how to install it."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, initdb or pg_ctl on it
    monkeypatch.setattr(postgres, "DEBIAN_BINDIRS", str(tmp_path / "postgresql" / "*" / "bin"))
    with pytest.raises(pytest.fail.Exception) as failed, postgres.postgres_server():
        pass
    message = str(failed.value)
    assert "PostgreSQL server (initdb, pg_ctl) not found" in message
    assert "apt-get install postgresql" in message and "make servers" in message

    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        postgres.require_postgres()


def test_debian_postgres_off_path_is_found_and_redis_missing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """initdb in Debian's /usr/lib/postgresql/N/bin, nothing on PATH: found there, newest
    version first; a missing redis-server fails under CI naming it."""
    for version in ("9", "15"):
        folder = tmp_path / "postgresql" / version / "bin"
        folder.mkdir(parents=True)
        for name in ("initdb", "pg_ctl"):
            (folder / name).write_text("#!/bin/sh\n")
            (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "DEBIAN_BINDIRS", str(tmp_path / "postgresql" / "*" / "bin"))
    assert postgres.require_postgres() == postgres.PostgresBinaries(
        tmp_path / "postgresql" / "15" / "bin" / "initdb",
        tmp_path / "postgresql" / "15" / "bin" / "pg_ctl",
    )

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(redis, "SEARCHED", (str(tmp_path / "redis-server"),))
    with pytest.raises(pytest.fail.Exception, match="redis-server not found.*apt-get install"):
        redis.require_redis()


def test_need_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{NEED}.*{INSTALL}"):
        need(NEED, INSTALL)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=f"{NEED}: {INSTALL}"):
        need(NEED, INSTALL)


SKIPS = {"skip", "skipif", "importorskip"}
SKIP_CALLS = {"pytest.skip", "pytest.importorskip"}
SKIP_MARKS = {"pytest.mark.skip", "pytest.mark.skipif"}


def dotted(node: ast.AST) -> str:
    """`pytest.mark.skipif` for that attribute chain, "" for anything else."""
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return node.id if isinstance(node, ast.Name) else ""


def is_gpu_test(function: ast.FunctionDef) -> bool:
    return any(dotted(d) == "pytest.mark.gpu" for d in function.decorator_list)


def test_no_test_skips_except_through_the_one_home() -> None:
    """Only servers/need.py calls pytest.skip; `skip_without_gpu` is called only in tests
    marked `gpu` and in the `cuda` fixture they use; no skip marks, no importorskip,
    anywhere else in the tests (read from the code, not its comments or strings)."""
    home = TESTS / "servers" / "need.py"
    offenders, gpu_tests = [], 0
    for path in sorted(TESTS.rglob("*.py")):
        if path == home:
            continue
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(PROJECT_ROOT))
        for node in ast.walk(tree):
            is_call = isinstance(node, ast.Call)
            name = dotted(node.func if is_call else node)
            if name in (SKIP_CALLS if is_call else SKIP_MARKS):
                offenders.append(f"{where}:{node.lineno}: {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "pytest":
                offenders += [
                    f"{where}:{node.lineno}: from pytest import {a.name}"
                    for a in node.names
                    if a.name in SKIPS
                ]
            gpu_fixture = path.name == "conftest.py" and getattr(node, "name", "") == "cuda"
            if isinstance(node, ast.FunctionDef) and not (is_gpu_test(node) or gpu_fixture):
                offenders += [
                    f"{where}:{call.lineno}: skip_without_gpu in {node.name}, not marked gpu"
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call) and dotted(call.func) == "skip_without_gpu"
                ]
            if isinstance(node, ast.FunctionDef) and is_gpu_test(node):
                gpu_tests += 1
    assert offenders == [], "skips that bypass lakehouse_tests/servers/need.py:\n" + "\n".join(
        offenders
    )
    assert gpu_tests >= 1  # the CUDA test is seen, so the walk reads decorators
    # the session's `cuda` fixture (it skips first) is asked for by `gpu` tests only
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and "cuda" in [a.arg for a in node.args.args]:
                assert is_gpu_test(node), f"{path.name}::{node.name} uses `cuda`, not marked gpu"
    assert "pytest.skip(" in home.read_text()
