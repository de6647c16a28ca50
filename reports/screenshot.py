"""PNG of each page with headless Chromium, for people who want an image for a paper or a chat.

Uses Chromium's own `--screenshot` (no driver library): the page is given virtual time to run the vega
bootstrap before the capture, and a window tall enough for its charts. Network stays off: every page is
self-contained, and the flags below stop Chromium's own background traffic.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from reports._errors import MechHybridError

__all__ = ["screenshot_pages", "find_chromium", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--hide-scrollbars")
_WIDTH = 1280
# A chart block is about 520 px tall at the default sizes; the index has none.
_BASE_HEIGHT, _PER_CHART = 900, 520
# Virtual time lets vega finish drawing before the capture without a wall-clock sleep.
_VIRTUAL_TIME_MS = 10000


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _height(page: Path) -> int:
    text = page.read_text(encoding="utf-8")
    return min(_BASE_HEIGHT + _PER_CHART * text.count('class="vega-spec"'), 16000)


def screenshot_pages(pages: list[Path], chromium: str | None = None, timeout_s: float = 120) -> list[Path]:
    """Write `<page>.png` next to each HTML page; returns the PNG paths."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise MechHybridError("--screenshot needs Chromium (Debian: apt-get install -y chromium)")
    pngs = []
    with tempfile.TemporaryDirectory(prefix="mechhybrid-chromium-") as profile:
        for page in pages:
            png = page.with_suffix(".png")
            command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                       f"--virtual-time-budget={_VIRTUAL_TIME_MS}", f"--window-size={_WIDTH},{_height(page)}",
                       f"--screenshot={png}", page.resolve().as_uri()]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=timeout_s)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                raise MechHybridError(f"{page}: Chromium could not take the screenshot ({error})") from None
            if not png.is_file():
                raise MechHybridError(f"{page}: Chromium wrote no screenshot")
            pngs.append(png)
    return pngs
