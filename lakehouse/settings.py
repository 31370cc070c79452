"""Where the sources and the lake are: read from the environment, checked early.

Every setting comes from an environment variable with a local default, so the
embedded demo needs nothing but the Python packages, and a production
deployment only changes variables (secrets included, never files in the repo).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lakehouse.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SOURCES_VAR = "LAKEHOUSE_SOURCES"
METADATA_DB_VAR = "LAKEHOUSE_METADATA_DB"
LAKE_VAR = "LAKEHOUSE_LAKE"
LOGS_START_VAR = "LAKEHOUSE_LOGS_START"
LOGS_END_VAR = "LAKEHOUSE_LOGS_END"
ENV_VAR = "LAKEHOUSE_ENV"
CELERY_BROKER_VAR = "LAKEHOUSE_CELERY_BROKER"
# What the production instance's dagster.yaml reads (deploy/production/dagster.yaml).
INSTANCE_VARS = ("LAKEHOUSE_DAGSTER_PG_URL", "LAKEHOUSE_COMPUTE_LOGS_BUCKET")
AUTOMATION_INTERVAL_VAR = "LAKEHOUSE_AUTOMATION_INTERVAL"

PRODUCTION = "production"
ENVIRONMENTS = ("local", PRODUCTION)
# What the production profile cannot run without: no local default stands in for these.
PRODUCTION_VARS = (SOURCES_VAR, METADATA_DB_VAR, LAKE_VAR)

DEFAULT_LOGS_START = "2026-10-01"
DEFAULT_AUTOMATION_INTERVAL_S = 60


def _data_dir() -> Path:
    return PROJECT_ROOT / "data"


def sources_uri() -> str:
    """Root of the object store holding `photos/` and `logs/` (a path or s3:// URI)."""
    return os.environ.get(SOURCES_VAR) or str(_data_dir() / "sources")


def metadata_db_url() -> str:
    """SQLAlchemy URL of the operational database (SQLite file by default)."""
    return os.environ.get(METADATA_DB_VAR) or f"sqlite:///{_data_dir() / 'sources' / 'metadata.db'}"


def lake_uri() -> str:
    """Root of every Delta table we write (a path or s3:// URI)."""
    return os.environ.get(LAKE_VAR) or str(_data_dir() / "lake")


def existing_lake_uri() -> str:
    """The lake root for a command that only reads it: a local root that does not exist is
    a wrong setting (one line naming it), not an empty lake."""
    uri = lake_uri()
    if not is_s3(uri) and not Path(uri).is_dir():
        raise ConfigError(
            f"{LAKE_VAR}={uri!r}: no such directory (run `make demo`, or point it at your lake)"
        )
    return uri


def logs_start() -> str:
    """First day of the daily log partitions (YYYY-MM-DD)."""
    return os.environ.get(LOGS_START_VAR) or DEFAULT_LOGS_START


def logs_end() -> str | None:
    """Last day of the daily log partitions (YYYY-MM-DD), or None: open-ended, up to today.
    `make` sets it to the last day of a local sources' logs/, so the demo's partition set
    ends where its logs end."""
    value = os.environ.get(LOGS_END_VAR) or None
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{LOGS_END_VAR}={value!r}: expected a day, YYYY-MM-DD") from None
    return value


def automation_interval_s() -> int:
    """Seconds between two evaluations of the automation conditions (at least 5)."""
    text = os.environ.get(AUTOMATION_INTERVAL_VAR) or str(DEFAULT_AUTOMATION_INTERVAL_S)
    if not text.isdigit() or int(text) < 5:
        raise ConfigError(f"{AUTOMATION_INTERVAL_VAR}={text!r}: expected whole seconds, at least 5")
    return int(text)


def environment() -> str:
    """`local` (the default: embedded demo, one machine) or `production`."""
    name = os.environ.get(ENV_VAR) or "local"
    if name not in ENVIRONMENTS:
        raise ConfigError(f"{ENV_VAR}={name!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return name


def is_production() -> bool:
    return environment() == PRODUCTION


def require_production_settings(*also: str) -> None:
    """Fail at load time, naming every variable the production profile lacks."""
    missing = [name for name in (*PRODUCTION_VARS, *also) if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"{ENV_VAR}={PRODUCTION} needs these variables set: {', '.join(missing)} "
            "(see README, 'Running beyond one machine')"
        )


def masked(url: str) -> str:
    """A URL fit to print: its password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str


def parse_s3(uri: str) -> S3Location:
    """Split `s3://bucket/some/prefix` into bucket and prefix (no slashes at the ends)."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return S3Location(bucket, prefix.strip("/"))


def s3_storage_options() -> dict[str, str]:
    """deltalake storage options from the standard AWS variables (secrets stay in the env)."""
    options = {
        name: os.environ[name]
        for name in (
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        )
        if os.environ.get(name)
    }
    options.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options
