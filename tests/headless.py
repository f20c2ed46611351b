"""Headless Chromium for page tests: DOM after scripts ran, and screenshots as arrays.

The network is cut (every host name resolves to nothing), so a page that still loads from a CDN
shows that here exactly as it would offline. Tests using it are skipped when no Chromium is
installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000"]


def _run(page: Path, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, Path(page).resolve().as_uri()],
                              capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _run(page, "--dump-dom")


def screenshot(page: Path, out: Path, width: int = 1500, height: int = 2400) -> np.ndarray:
    """(height, width, 3) uint8 screenshot of the page's top."""
    from PIL import Image

    _run(page, f"--window-size={width},{height}", f"--screenshot={out}")
    return np.asarray(Image.open(out).convert("RGB"))


def has_colour(shot: np.ndarray, rgb: tuple[int, int, int], tol: int = 12, min_pixels: int = 30) -> bool:
    """At least ``min_pixels`` pixels within ``tol`` of ``rgb`` (e.g. a figure's line colour)."""
    near = (np.abs(shot.astype(int) - np.array(rgb)) <= tol).all(axis=-1)
    return int(near.sum()) >= min_pixels
