"""PNG of each page with headless Chromium, for people who want an image for a paper or a chat.

Uses Chromium's own `--screenshot` (no driver library): the page is given virtual time to run the vega
bootstrap before the capture, and a window tall enough for its charts. Network stays off: every page is
self-contained, and the flags below stop Chromium's own background traffic.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["screenshot_pages", "find_chromium", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
                  # Containers often give /dev/shm 64 MB, too little for Chromium's renderer.
                  "--disable-dev-shm-usage", "--hide-scrollbars")
_WIDTH = 1280
# Fallback estimate when the page did not report its height: a chart block is about 520 px tall.
_BASE_HEIGHT, _PER_CHART = 900, 520
# Chromium's own limit on a capture is 16,384 px.
_MAX_HEIGHT = 16000
# Virtual time lets vega finish drawing before the capture without a wall-clock sleep.
_VIRTUAL_TIME_MS = 10000


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(command: list[str], page: Path, timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout_s)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise MechHybridError(f"{page}: Chromium could not take the screenshot ({error})") from None


def _height(chromium: str, page: Path, profile: str, timeout_s: float) -> int:
    """The drawn page's height: the bootstrap writes it to the DOM once the charts are in (one extra
    Chromium run per page, because `--screenshot` captures only the window); an estimate if it is missing."""
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={_VIRTUAL_TIME_MS}",
               f"--window-size={_WIDTH},{_BASE_HEIGHT}", "--dump-dom", page.resolve().as_uri()]
    found = re.search(r'data-page-height="(\d+)"', _run(command, page, timeout_s).stdout)
    if found:
        height = int(found.group(1))
    else:
        height = _BASE_HEIGHT + _PER_CHART * page.read_text(encoding="utf-8").count('class="vega-spec"')
    return max(200, min(height, _MAX_HEIGHT))


def screenshot_pages(pages: list[Path], chromium: str | None = None, timeout_s: float = 120) -> list[Path]:
    """Write `<page>.png` next to each HTML page; returns the PNG paths."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise MechHybridError("--screenshot needs Chromium (Debian: apt-get install -y chromium)")
    pngs = []
    with tempfile.TemporaryDirectory(prefix="mechhybrid-chromium-") as profile:
        for page in pages:
            png = page.with_suffix(".png")
            height = _height(chromium, page, profile, timeout_s)
            command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                       f"--virtual-time-budget={_VIRTUAL_TIME_MS}", f"--window-size={_WIDTH},{height}",
                       f"--screenshot={png}", page.resolve().as_uri()]
            _run(command, page, timeout_s)
            if not png.is_file():
                raise MechHybridError(f"{page}: Chromium wrote no screenshot")
            pngs.append(png)
    return pngs
