"""A throwaway Redis server on loopback (the Celery broker), nothing saved to disk."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse_tests.servers.need import need
from lakehouse_tests.servers.postgres import free_port

# Debian's redis-server; /usr/sbin is off PATH for some users
SEARCHED = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
INSTALL = "`make servers` installs it (apt-get install redis-server; `make test` does)"


def find_redis() -> Path | None:
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    return next((Path(path) for path in SEARCHED if Path(path).is_file()), None)


def redis_available() -> bool:
    return find_redis() is not None


def require_redis() -> Path:
    """The `redis-server` executable, or a CI failure / skip naming what to install."""
    found = find_redis()
    if found is None:
        need("redis-server not found (PATH, " + ", ".join(SEARCHED) + ")", INSTALL)
    return found


@contextmanager
def redis_server() -> Iterator[str]:
    """Start `redis-server` in the foreground of a child process; yield its `redis://` URL."""
    executable = require_redis()
    port = free_port()
    server = subprocess.Popen(
        [str(executable), "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "no"]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)
