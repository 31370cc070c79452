"""Where the sources keep what we read: the source contract's keys and quarantine scopes."""

from __future__ import annotations

import re

PHOTO_PREFIX = "photos/"
LOG_PREFIX = "logs/"
LOG_KEY = re.compile(r"^logs/(\d{4}-\d{2}-\d{2})\.jsonl$")
# the quarantine scope of each source's rejects (the names of the observed source assets)
OBJECTS_SOURCE = "photo_objects"
LOGS_SOURCE = "activity_logs"


def log_key(day: str) -> str:
    """The object key of one day's activity log."""
    return f"{LOG_PREFIX}{day}.jsonl"
