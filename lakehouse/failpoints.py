"""Named crash points, so tests can SIGKILL a materialization at a chosen place.

`LAKEHOUSE_CRASH_AT=name[:nth]` kills this process with SIGKILL the nth time
(default first) execution reaches `failpoint(name)`. Unset, a failpoint costs
one environment lookup. SIGKILL is the point: no `finally`, no atexit, no
flush, exactly what a power cut or the OOM killer does to a run. Tests that
run in-process can instead attach an action to a point with `on` (stop the
object store there, say).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CRASH_VAR = "LAKEHOUSE_CRASH_AT"
WATCH_INTERVAL_S = 0.0001

_hits: Counter[str] = Counter()
_actions: dict[str, Callable[[], None]] = {}


def armed(name: str) -> bool:
    """Whether this is the hit of `name` that must crash (counts the hit)."""
    wanted = os.environ.get(CRASH_VAR)
    if not wanted:
        return False
    point, _, nth = wanted.partition(":")
    if point != name:
        return False
    _hits[name] += 1
    return _hits[name] == int(nth or 1)


def write_armed(name: str) -> bool:
    """Whether a crash is asked for during writes of table `name` (counts no hit)."""
    return os.environ.get(CRASH_VAR, "").partition(":")[0] == f"write/{name}"


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def failpoint(name: str) -> None:
    """Die here when LAKEHOUSE_CRASH_AT names this point (and this is its nth hit);
    run the action attached to it, once, if there is one."""
    if _actions and name in _actions:
        _actions.pop(name)()
    if armed(name):
        crash()


@contextmanager
def on(name: str, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` the first time this process reaches failpoint `name`."""
    _actions[name] = action
    try:
        yield
    finally:
        _actions.pop(name, None)


@contextmanager
def during_write(name: str, directory: str) -> Iterator[None]:
    """Around a Delta write of table `name` at `directory` (a local path): when
    `write/<name>` is armed, die as soon as the write puts a new data file on disk,
    so the data files exist and the commit that would reference them does not."""
    if not armed(f"write/{name}"):
        yield
        return
    root = Path(directory)
    before = set(data_files(root))
    threading.Thread(target=_kill_on_new_file, args=(root, before), daemon=True).start()
    yield
    crash()  # the write finished before the watcher saw a file: still die, one step late


def data_files(root: Path) -> Iterator[str]:
    """Every file of a table directory outside its transaction log."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "_delta_log"]
        yield from (os.path.join(directory, f) for f in files)


def _kill_on_new_file(root: Path, before: set[str]) -> None:
    # deltalake releases the GIL while it writes, so this thread runs during the write
    event = threading.Event()
    while not any(path not in before for path in data_files(root)):
        event.wait(WATCH_INTERVAL_S)
    crash()
