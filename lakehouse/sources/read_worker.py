"""A hashing worker process: `python -m lakehouse.sources.read_worker`.

Started as a plain module, not by `multiprocessing`, whose spawned children import the
parent's `__main__` again (a `dagster` or `lakehouse` command: Dagster, polars, torch)
before they run anything: about a second and hundreds of MB each. This one imports only
`lakehouse.sources.probe`. It reads one pickled request, `(root, keys, sizes, probe)`,
from stdin and writes one pickled answer to stdout: `(True, facts)` in the keys' order,
or `(False, exception)`, which the parent raises as its own.
"""

from __future__ import annotations

import pickle
import sys

from lakehouse.sources.probe import read_local_facts


def main() -> int:
    root, keys, sizes, probe = pickle.load(sys.stdin.buffer)
    try:
        answer: tuple[bool, object] = (True, read_local_facts(root, keys, sizes, probe))
    except Exception as exc:  # raised again in the parent, whatever it was
        answer = (False, exc)
    pickle.dump(answer, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
