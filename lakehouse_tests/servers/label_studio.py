"""A real Label Studio 1.23.2 on loopback, from the venv `make label-studio-venv` builds.

Its database migrations take about 40 s, so `make label-studio-venv` runs them once into
a template data directory; each test session starts from a copy of it. The first user
(an admin with a known legacy API token) is created at start, as `label-studio start
--username … --user-token …` does for a fresh deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

from lakehouse.settings import PROJECT_ROOT
from lakehouse_tests.servers.need import need
from lakehouse_tests.servers.postgres import free_port

VENV = PROJECT_ROOT / ".venv-label-studio"
EXECUTABLE = VENV / "bin" / "label-studio"
TEMPLATE = VENV / "template-data"
ADMIN = "admin@example.com"
START_TIMEOUT_S = 90
# No calls to the package index or analytics from a test
QUIET = {"LABEL_STUDIO_LATEST_VERSION_CHECK": "false", "LABEL_STUDIO_COLLECT_ANALYTICS": "false"}


def require_label_studio() -> None:
    """The venv and its migrated template, or a CI failure / skip naming the command."""
    if EXECUTABLE.is_file() and (TEMPLATE / "label_studio.sqlite3").is_file():
        return
    need(
        f"Label Studio not found at {EXECUTABLE} (with its migrated template {TEMPLATE})",
        "`make label-studio-venv` builds it (`make test` does)",
    )


@dataclass
class Studio:
    """A running server, its admin token, and JSON calls as that admin."""

    url: str
    token: str
    log: Path
    server: subprocess.Popen

    def wait_until_up(self) -> None:
        """Wait for the API to answer (the server starts in about 5 s)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"Label Studio exited: {self.log.read_text()[-2000:]}")
            try:
                self.call("GET", "/api/current-user/whoami")
                return
            except OSError:  # refused while it starts (URLError and HTTPError are OSErrors)
                time.sleep(0.25)
        raise RuntimeError(
            f"Label Studio not up in {START_TIMEOUT_S} s: {self.log.read_text()[-2000:]}"
        )

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urlopen(request, timeout=60) as answer:  # noqa: S310 (loopback http)
            text = answer.read().decode()
        return json.loads(text) if text else None

    def get_bytes(self, path: str) -> bytes:
        request = Request(self.url + path, headers={"Authorization": f"Token {self.token}"})
        with urlopen(request, timeout=60) as answer:  # noqa: S310
            return answer.read()


@contextmanager
def label_studio(data: Path, document_root: Path, token: str) -> Iterator[Studio]:
    """Start Label Studio with local-files serving under `document_root` (not waiting for
    it: call `wait_until_up`, and do other work meanwhile); stop it after."""
    require_label_studio()
    shutil.copytree(TEMPLATE, data)
    port = free_port()
    log = data / "server.log"
    env = {
        **os.environ,
        **QUIET,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(EXECUTABLE),
                "start",
                "--data-dir",
                str(data),
                "--internal-host",
                "127.0.0.1",
                "-p",
                str(port),
                "--no-browser",
                "--username",
                ADMIN,
                "--password",
                "admin-password-1",
                "--user-token",
                token,
                "--enable-legacy-api-token",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    studio = Studio(f"http://127.0.0.1:{port}", token, log, server)
    try:
        yield studio
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
