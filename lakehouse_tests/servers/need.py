"""The one home of "this test needs X" (a server, a browser, a privilege, a GPU).

Under `CI=true` a missing X is a failure that names X and how `make test` installs it;
elsewhere a skip that says exactly what to install. Only `gpu` tests may skip in CI
(`skip_without_gpu`); the hook in `policy.py` fails any other skip there, so a skip
added elsewhere cannot go silent either.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True in CI (`.ci/run` sets CI=true), where nothing a test needs may be missing."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(what: str, install: str) -> NoReturn:
    """`what` is missing: fail under CI, skip elsewhere; `install` says how to get it."""
    if in_ci():
        pytest.fail(f"{what}; under CI=true that is a failure: {install}", pytrace=False)
    pytest.skip(f"{what}: {install}")


def skip_without_gpu(what: str) -> NoReturn:
    """Skip a `gpu`-marked test where CUDA is absent (CI included: no runner has a GPU)."""
    pytest.skip(f"{what} (CUDA is absent on this machine; a `gpu` test)")
