"""What every benchmark shares: where its generated data lives."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path


def run_in_workdir(
    run: Callable[[Path, argparse.Namespace], None], args: argparse.Namespace, name: str
) -> int:
    """Run in `--keep DIR` (kept for a look afterwards) or a temp dir removed at the end."""
    if args.keep:
        run(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as work:
            run(Path(work), args)
    return 0
