"""A real browser for the tests that look at a page as a person would: Debian's headless
Chromium, with every network request sent to a proxy on a dead local port (the page works
offline or not at all). Tests skip, saying why, where /usr/bin/chromium is absent
(``apt-get install chromium``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Every request, loopback included, goes to a proxy on port 9 (discard: nothing listens).
OFFLINE = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def need_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"no headless browser: {CHROMIUM} is absent (apt-get install chromium)")


def _run(page: Path, *args: str) -> subprocess.CompletedProcess:
    need_chromium()
    cmd = [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *OFFLINE,
           "--virtual-time-budget=5000", *args, Path(page).resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


def dump_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, offline."""
    return _run(page, "--dump-dom").stdout.decode("utf-8")


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 2000) -> Path:
    """A PNG of the page as drawn offline."""
    _run(page, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.is_file(), f"Chromium wrote no screenshot to {out}"
    return out


def ink(png: Path) -> tuple[float, int]:
    """(share of pixels that are not the page's background colour, distinct colours) of a
    screenshot: a blank page gives (0, 1)."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=img.width * img.height)  # [(count, colour), ...]
    background = max(colours)[0]
    return 1 - background / (img.width * img.height), len(colours)
