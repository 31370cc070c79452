"""The README's Guarantees, proven as written: a pytest plugin (conftest's `pytest_plugins`).

Every `file.py::test_name` named under README "Guarantees" must exist (a `proof` test
checks it by parsing the test files), and when a session runs the whole of
lakehouse_tests, each of them must have run and passed, or the session fails naming
them. A test whose skip is allowed (outside CI) is listed, not failed. The session
also fails if the repository's working tree changed under it (`git status`): tests
write into temporary folders, never into the checkout.

Under pytest-xdist the workers' reports reach the controller through
`pytest_runtest_logreport`, so the check runs once, on the controller.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
README = REPO / "README.md"
NAMED = re.compile(r"`([\w/.-]+\.py)::(\w+)`")
# caches tools keep in the checkout (all git-ignored), not outputs of a test
CACHES = ("__pycache__/", ".pytest_cache/", ".ruff_cache/", ".hypothesis/", ".import_linter_cache/")


def guarantees_section(readme: Path = README) -> str:
    """README's "## Guarantees" section with its subsections, up to the next "## " heading."""
    text = "\n" + readme.read_text(encoding="utf-8")
    start = text.index("\n## Guarantees\n")
    end = text.find("\n## ", start + 1)
    return text[start : len(text) if end < 0 else end]


def named_tests(readme: Path = README) -> list[tuple[str, str]]:
    """Every (file, test) the Guarantees section names, in order, once each."""
    return list(dict.fromkeys(NAMED.findall(guarantees_section(readme))))


def defined_tests(path: Path) -> set[str]:
    """Test functions a file defines (module level, or methods of a `Test…` class)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return {name for name in found if name.startswith("test_")}


def missing_tests(readme: Path = README, tests: Path = TESTS) -> list[str]:
    """The named tests that no test file defines."""
    defined: dict[str, set[str]] = {}
    missing = []
    for file, test in named_tests(readme):
        path = tests / file
        if file not in defined:
            defined[file] = defined_tests(path) if path.is_file() else set()
        if test not in defined[file]:
            missing.append(f"{file}::{test}")
    return missing


def test_files(tests: Path = TESTS) -> set[str]:
    return {path.name for path in tests.glob("test_*.py")}


def git_status(repo: Path = REPO) -> set[str] | None:
    """The checkout's changed, untracked and ignored paths (tool caches left out);
    None when the repository is not a git checkout."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return {line for line in done.stdout.splitlines() if not any(cache in line for cache in CACHES)}


class Guarantees:
    """Records each test's outcome and checks the README's named tests at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: dict[str, str] = {}  # nodeid -> passed | failed | skipped
        self.problems: list[str] = []
        self.status_before = git_status()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        known = self.outcomes.get(report.nodeid)
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and known != "failed":
            self.outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed and known is None:
            self.outcomes[report.nodeid] = "passed"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.whole_suite_ran():
            self.problems += unproven(named_tests(), self.outcomes, ci=is_ci())
        if self.status_before is not None:
            after = git_status() or set()
            self.problems += [
                f"the test run changed the checkout: {line}"
                for line in sorted(after - self.status_before)
            ]
        if self.problems and session.exitstatus == 0:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        if self.problems:
            terminalreporter.section("README guarantees and side effects", red=True)
            for line in self.problems:
                terminalreporter.line(line, red=True)

    def whole_suite_ran(self) -> bool:
        """Every test file of lakehouse_tests reported, with no keyword selection."""
        if self.config.option.keyword:
            return False
        ran = {nodeid.split("::")[0].rsplit("/", 1)[-1] for nodeid in self.outcomes}
        return test_files() <= ran


def unproven(named: Iterable[tuple[str, str]], outcomes: dict[str, str], ci: bool) -> list[str]:
    """Why each named test proves nothing in this session: not run, failed, or skipped
    (a skip counts only under CI, where only `gpu` tests may skip)."""
    by_test: dict[tuple[str, str], list[str]] = {}
    for nodeid, outcome in outcomes.items():
        path, _, name = nodeid.partition("::")
        by_test.setdefault((path.rsplit("/", 1)[-1], name.split("[")[0]), []).append(outcome)
    problems = []
    for file, test in named:
        seen = by_test.get((file, test), [])
        if not seen:
            problems.append(f"README guarantee not proven: {file}::{test} did not run")
        elif "failed" in seen:
            problems.append(f"README guarantee not proven: {file}::{test} failed")
        elif "passed" not in seen and ci:
            problems.append(f"README guarantee not proven: {file}::{test} was skipped")
    return problems


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    """Check on the controller only: an xdist worker sees a part of the session."""
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Guarantees(config), "lakehouse-guarantees")
