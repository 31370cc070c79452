"""A throwaway PostgreSQL server on loopback, owned by the `postgres` user (initdb refuses root).

Debian's `postgresql` puts `initdb` and `pg_ctl` in /usr/lib/postgresql/N/bin, off PATH:
they are found through `pg_config --bindir`, that folder, then PATH, and run by their path.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from lakehouse_tests.servers.need import need

# Debian's layout, one folder per major version (the newest wins)
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
INSTALL = "`make servers` installs it (apt-get install postgresql; `make test` does)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresBinaries:
    initdb: Path
    pg_ctl: Path


def bindir_candidates() -> list[Path]:
    """Where initdb may be: `pg_config --bindir`, Debian's folders, then PATH."""
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        answer = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if answer.returncode == 0 and answer.stdout.strip():
            found.append(Path(answer.stdout.strip()))
    debian = [Path(folder) for folder in glob.glob(DEBIAN_BINDIRS)]
    found += sorted(debian, key=lambda folder: folder.parent.name.zfill(4), reverse=True)
    found += [Path(folder) for folder in os.environ.get("PATH", "").split(os.pathsep) if folder]
    return found


def find_postgres() -> PostgresBinaries | None:
    """The first folder holding both `initdb` and `pg_ctl`, or None."""
    for folder in bindir_candidates():
        initdb, pg_ctl = folder / "initdb", folder / "pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return PostgresBinaries(initdb, pg_ctl)
    return None


def postgres_available() -> bool:
    return find_postgres() is not None


def require_postgres() -> PostgresBinaries:
    """The server binaries, or a CI failure / skip naming what to install."""
    found = find_postgres()
    if found is None:
        searched = ", ".join(str(folder) for folder in bindir_candidates()[:4]) or "nothing"
        need(f"PostgreSQL server (initdb, pg_ctl) not found (searched {searched}, …)", INSTALL)
    return found


def as_postgres(args: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (as in CI), else as ourselves."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a temp dir; yield its base URL (`postgresql+psycopg2://…/postgres`)."""
    binaries = require_postgres()
    root = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    data, port = root / "data", free_port()
    subprocess.run(
        as_postgres([str(binaries.initdb), "-D", str(data), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    pg_ctl = str(binaries.pg_ctl)
    subprocess.run(
        as_postgres(
            [pg_ctl, "-D", str(data), "-w", "-o", options, "-l", str(root / "log"), "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url`; yield its URL, drop it after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
