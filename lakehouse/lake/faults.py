"""Storage faults: which failures of the disk or object store under the lake are which.

deltalake reports a full disk or an unreachable object store as a chain of Rust
errors; here they become one line naming the table, where it lives and the cause,
and one of two kinds: permanent (no retry fixes a full or read-only disk, so the
step fails at once) or transient (the object store stopped answering: retried).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from deltalake.exceptions import CommitFailedError, TableNotFoundError

from lakehouse.failpoints import failpoint
from lakehouse.resources.errors import PermanentError

# errors of the disk under the lake that no retry fixes
PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
OS_ERROR = re.compile(r"\(os error (\d+)\)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNREACHABLE = (
    "error sending request",
    "connect error",
    "connection refused",
    "connection reset",
    "connection closed",
    "timed out",
    "dns error",
    "could not connect",
)


class LakeDiskError(PermanentError):
    """The disk under the lake refused (full, read-only, no permission): nothing was committed."""


class LakeUnavailable(RuntimeError):
    """The object store holding the lake did not answer: transient, so the step is retried."""


@contextmanager
def storage_faults_as_one_line(
    where: Callable[[], str], kept_version: Callable[[], int | None] | None = None
) -> Iterator[None]:
    """Storage failures as one line (`where` names the table, where it lives and what was
    being done; `kept_version`, for writes, the version the table stays at) instead of
    a chain of Rust errors; anything else passes through unchanged."""
    try:
        yield
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        transient, cause = fault
        if transient:
            failpoint("lake/unavailable")
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or "S3"
            raise LakeUnavailable(
                f"{where()} failed: the object store ({endpoint}) is unreachable ({cause}); "
                "nothing was committed"
            ) from None
        version = None if kept_version is None else kept_version()
        kept = "" if version is None else f", the table stays at version {version}"
        raise LakeDiskError(f"{where()} failed: {cause}; nothing was committed{kept}") from None


def storage_fault(exc: BaseException) -> tuple[bool, str] | None:
    """(transient?, cause in a few words) when `exc` is the storage failing, else None.

    deltalake reports local disk errors as text ending in `(os error N)` and an
    unreachable object store as a chain of HTTP client errors; boto3 raises its own.
    """
    if isinstance(exc, TableNotFoundError | CommitFailedError):
        return None
    text = ANSI.sub("", str(exc))
    number = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if number is None and (found := OS_ERROR.search(text)):
        number = int(found.group(1))
    if number in PERMANENT_ERRNOS:
        return False, f"{os.strerror(number)} ({errno.errorcode[number]})"
    lowered = text.lower()
    if _is_connection_error(exc) or any(sign in lowered for sign in UNREACHABLE):
        lines = [line.strip(" ↳-") for line in text.splitlines() if line.strip(" ↳-")]
        return True, lines[-1] if lines else type(exc).__name__
    return None


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:
        return False
    return isinstance(exc, BotoConnectionError | HTTPClientError)
