"""Debian's chromium, which the UI tests drive by its path (Playwright downloads no browser)."""

from __future__ import annotations

from pathlib import Path

from lakehouse_tests.servers.need import need

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> Path:
    """The browser, or a CI failure / skip naming how to install it."""
    if not CHROMIUM.exists():
        need(
            f"chromium not found at {CHROMIUM}",
            "`make browser` installs it (apt-get install chromium; `make test` does)",
        )
    return CHROMIUM
