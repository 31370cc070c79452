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
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CRASH_VAR = "LAKEHOUSE_CRASH_AT"

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
    so the data files exist and the commit that would reference them does not.

    The watcher is a process of its own, polling without a pause: a thread would need
    this process's GIL and could lose the race against a write of a few milliseconds."""
    if not armed(f"write/{name}"):
        yield
        return
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(os.getpid()), directory],
        stdout=subprocess.PIPE,
        text=True,
    )
    watcher.stdout.readline()  # type: ignore[union-attr]  # "ready": it knows the files before
    yield
    crash()  # the write finished before the watcher saw a file: still die, one step late


# the watcher: note the table's data files, say ready, kill the writer at the first new one
WATCHER = """
import os, signal, sys
def data_files(root):
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "_delta_log"]
        yield from (os.path.join(directory, f) for f in files)
writer, root = int(sys.argv[1]), sys.argv[2]
before = set(data_files(root))
print("ready", flush=True)
while all(path in before for path in data_files(root)):
    if os.getppid() != writer:  # the writer died on its own: nothing left to kill
        sys.exit()
os.kill(writer, signal.SIGKILL)
"""
