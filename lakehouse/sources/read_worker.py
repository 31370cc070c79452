"""A hashing worker process: `python -m lakehouse.sources.read_worker`.

Started as a plain module, not by `multiprocessing`, whose spawned children import the
parent's `__main__` again (a `dagster` or `lakehouse` command: Dagster, polars, torch)
before they run anything: about a second and hundreds of MB each. This one imports only
`lakehouse.sources.probe`. It reads pickled requests, `(root, keys, known stamps, probe)`,
from stdin until it closes, and answers each on stdout with one pickle: `(True, scanned)`,
the `ScannedFiles` columns in the keys' order (a few arrays, not an object per file), or
`(False, exception)`, which the parent raises as its own.
"""

from __future__ import annotations

import pickle
import sys

from lakehouse.sources.probe import scan_local


def main() -> int:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            root, keys, known, probe = pickle.load(requests)
        except EOFError:
            return 0
        try:
            answer: tuple[bool, object] = (True, scan_local(root, keys, known, probe))
        except Exception as exc:  # raised again in the parent, whatever it was
            answer = (False, exc)
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


if __name__ == "__main__":
    raise SystemExit(main())
