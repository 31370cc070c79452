"""What every benchmark shares: where its generated data lives, and the result record."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Result:
    """One comparison against a peer: our figure, the peer's, their ratio and the target."""

    name: str
    ours: float
    peer: float
    unit: str
    ratio: float
    target: str  # ">= 1.0" or "<= 1.2": how `ratio` must compare
    met: bool

    @classmethod
    def of(cls, name: str, ours: float, peer: float, unit: str, ratio: float, target: str):
        """A result whose `met` follows from `ratio` and `target`."""
        op, bound = target.split()
        met = ratio >= float(bound) if op == ">=" else ratio <= float(bound)
        return cls(name, ours, peer, unit, ratio, target, met)

    def line(self) -> str:
        verdict = "met" if self.met else "NOT met"
        return (
            f"{self.name}: ours {self.ours:.4g} {self.unit}, peer {self.peer:.4g} {self.unit}, "
            f"ratio {self.ratio:.3f} (target {self.target}) -> {verdict}"
        )
