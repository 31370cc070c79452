"""Errors that no retry fixes, in the form Dagster honours: the step fails at once.

Dagster bypasses an asset's RetryPolicy only for `dg.Failure(allow_retries=False)`,
so an error raised inside a step that no retry can fix (a wrong setting, a full or
read-only disk, an incompatible schema) derives from `PermanentError`. This is
the lowest Dagster-aware layer, so resources and the lake can both raise them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lakehouse.errors import ConfigError


class PermanentError(dg.Failure):
    """An error no retry can fix (a wrong setting, an incompatible source, a full or
    read-only disk): Dagster fails the step at once, bypassing its retry policy."""

    def __init__(self, message: str) -> None:
        super().__init__(description=message, allow_retries=False)


class SettingError(PermanentError, ConfigError):
    """A setting found wrong while a step runs: a ConfigError (the CLI prints one line)
    that also fails the step at once."""


@contextmanager
def permanent(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of these kinds, raised by pure code that knows nothing of Dagster, fail the
    step at once: re-raised as a PermanentError that names them."""
    try:
        yield
    except kinds as exc:
        raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
