"""The metadata database may be Postgres: same rows, same lake, same DataVersions as SQLite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.demo.world import generate_world
from lakehouse_tests.conftest import WORLD, Lakehouse, materializations

# The server is the session's (conftest `postgres_db`: a database per test); a missing
# server fails under CI=true and skips elsewhere, naming what to install.
pytestmark = [pytest.mark.foundation]


class PostgresLakehouse(Lakehouse):
    url: str = ""

    @property
    def db_url(self) -> str:
        return self.url


def postgres_lakehouse(url: str, root: Path) -> PostgresLakehouse:
    """The test world with its metadata database in the Postgres at `url`, lake under `root`."""
    sources = root / "pg-sources"
    sources.mkdir()
    generate_world(sources, url, **WORLD)
    lakehouse = PostgresLakehouse(sources=sources, lake=root / "pg-lake")
    lakehouse.url = url
    return lakehouse


def test_postgres_metadata_db_gives_the_same_lake(
    lakehouse: Lakehouse, tmp_path: Path, postgres_db: str
) -> None:
    sqlite_run = materializations(lakehouse.materialize())
    other = postgres_lakehouse(postgres_db, tmp_path)
    other.observe()
    pg_run = materializations(other.materialize())
    shutil.rmtree(other.sources)
    for name in ("raw_users", "raw_photos", "raw_photo_labels"):
        assert pg_run[name]["dagster/row_count"] == sqlite_run[name]["dagster/row_count"], name
        assert pg_run[name]["data_version"] == sqlite_run[name]["data_version"], name
