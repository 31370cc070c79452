"""Named crash points, so tests can SIGKILL a materialization at a chosen place.

`LAKEHOUSE_CRASH_AT=name[:nth]` kills this process with SIGKILL the nth time
(default first) execution reaches `failpoint(name)`. Unset, a failpoint costs
one environment lookup. SIGKILL is the point: no `finally`, no atexit, no
flush, exactly what a power cut or the OOM killer does to a run. Tests that
run in-process can instead attach an action to a point with `on` (stop the
object store there, say). Just before the kill, one line on stderr says where
(`LAKEHOUSE_CRASH_AT=<point>: SIGKILL at <point>`), so a run's log shows which
point killed it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CRASH_VAR = "LAKEHOUSE_CRASH_AT"
# inotify(7): a file written and closed, or renamed into place (a staged write landing)
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x8, 0x80, 0x100, 0x40000000
WATCHED = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
EVENT = struct.Struct("iIII")
PR_SET_PDEATHSIG = 1
# object_store stages a local write as `name#1` and renames it when complete
STAGED = "#"

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


def crash(name: str, pid: int | None = None) -> None:
    """SIGKILL this process (or `pid`), after one line on stderr naming the point."""
    announce(name)
    os.kill(pid or os.getpid(), signal.SIGKILL)


def announce(name: str) -> None:
    """The line a crash leaves in the log: written straight to fd 2 (no buffer, no lock),
    so it is there even though nothing is flushed after it."""
    line = f"{CRASH_VAR}={os.environ.get(CRASH_VAR, '')}: SIGKILL at {name}\n"
    with contextlib.suppress(OSError):
        os.write(2, line.encode())


def failpoints_armed() -> bool:
    """Whether any failpoint may act in this process now (LAKEHOUSE_CRASH_AT set, or an
    action attached): a loop over many objects asks once, not per object."""
    return bool(_actions) or bool(os.environ.get(CRASH_VAR))


def failpoint(name: str) -> None:
    """Die here when LAKEHOUSE_CRASH_AT names this point (and this is its nth hit);
    run the action attached to it, once, if there is one."""
    if _actions and name in _actions:
        _actions.pop(name)()
    if armed(name):
        crash(name)


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
    `write/<name>` is armed, die as soon as the write puts a complete new data file on
    disk, so the data files exist and the commit that would reference them does not.

    The write itself is the product's, unchanged; the watcher is a forked process,
    blocked on inotify (no polling, no GIL) and scheduled real-time where allowed, so
    it kills within microseconds of the file landing; a small write commits often
    less than a millisecond after its last data file (a polling thread missed that).
    """
    if not armed(f"write/{name}"):
        yield
        return
    watcher = _fork_watcher(f"write/{name}", Path(directory).absolute())
    try:
        yield
    finally:
        os.kill(watcher, signal.SIGKILL)
        os.waitpid(watcher, 0)
    # the write finished before the watcher saw a file: still die, one step late
    crash(f"write/{name} (late: after the commit)")


def _fork_watcher(point: str, root: Path) -> int:
    """A child process that SIGKILLs this one on the first complete data file below
    `root` (outside `_delta_log`); returns once it is watching."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    watches: dict[int, Path] = {}
    _watch_tree(libc, fd, root, _nearest_existing(root), watches, new=False)
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # the child takes no lock the parent's other threads may hold
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the writer
            # real-time where allowed: woken at once even on a busy machine
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            os.write(ready_w, b"r")
            if os.getppid() == parent:
                _kill_on_data_file(libc, fd, root, watches, parent, point)
        finally:
            os._exit(0)
    os.close(fd)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return child


def _kill_on_data_file(
    libc: ctypes.CDLL, fd: int, root: Path, watches: dict[int, Path], parent: int, point: str
) -> None:
    while True:
        events = os.read(fd, 1 << 16)
        offset = 0
        while offset < len(events):
            wd, mask, _, size = EVENT.unpack_from(events, offset)
            name = events[offset + EVENT.size : offset + EVENT.size + size].rstrip(b"\0")
            offset += EVENT.size + size
            path = watches[wd] / os.fsdecode(name) if wd in watches else None
            if path is None:
                continue
            landed = mask & (IN_CLOSE_WRITE | IN_MOVED_TO) and not mask & IN_ISDIR
            if (landed and _is_data_file(path, root)) or (
                mask & IN_ISDIR and _watch_tree(libc, fd, root, path, watches, new=True)
            ):
                crash(point, parent)
                return


def _watch_tree(
    libc: ctypes.CDLL, fd: int, root: Path, top: Path, watches: dict[int, Path], *, new: bool
) -> bool:
    """Watch `top` and the directories below it that lead to or lie in the table (not its
    log); True when `new` (a directory that just appeared) already holds a data file."""
    if not _leads_to_table(top, root):
        return False
    wd = libc.inotify_add_watch(fd, os.fsencode(top), WATCHED)
    if wd < 0:
        return False  # gone again: nothing to watch
    watches[wd] = top
    try:
        entries = list(os.scandir(top))
    except OSError:
        return False
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if _watch_tree(libc, fd, root, Path(entry.path), watches, new=new):
                return True
        elif new and _is_data_file(Path(entry.path), root):
            return True
    return False


def _leads_to_table(directory: Path, root: Path) -> bool:
    if directory == root or directory in root.parents:
        return True
    return root in directory.parents and "_delta_log" not in directory.relative_to(root).parts


def _is_data_file(path: Path, root: Path) -> bool:
    """A complete file of the table outside its transaction log (not a staged `…#1`)."""
    return _leads_to_table(path.parent, root) and root in path.parents and STAGED not in path.name


def _nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (a table's first write makes its directory)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
