"""Point the CDN assets of generated HTML pages at vendored local copies, so the pages render offline.

`dvc plots show` loads vega, vega-lite and vega-embed from a CDN, and Great Expectations' Data Docs
load bootstrap, jquery, bootstrap-table, popper, a datepicker, font-awesome and vega from eight CDN
hosts: with no network both pages stay blank. ``make_offline(root)`` rewrites every ``<script src>``
and ``<link href>`` that names a known CDN address in the HTML files under ``root`` to a copy in
``root/_vendor/`` (only the files the pages use are copied). The copies come from the npm packages
listed in ``ASSETS`` (vendored under ``vendor/`` by scripts/vendor_web_assets.py, with their
licences and sha256 in vendor/MANIFEST.json); the versions are the ones the pages ask for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).parent / "vendor"
LOCAL_DIR = "_vendor"


@dataclass(frozen=True)
class Asset:
    package: str  # npm package name
    version: str
    file: str  # path inside the npm package
    urls: tuple[str, ...]  # CDN addresses pages load this file from
    extra: tuple[str, ...] = ()  # files the asset itself loads (e.g. a stylesheet's fonts)

    @property
    def folder(self) -> str:
        return f"{self.package.replace('/', '__')}@{self.version}"

    @property
    def local(self) -> str:
        return f"{self.folder}/{self.file}"


_FA_FONTS = tuple(f"webfonts/fa-{n}.woff2" for n in ("brands-400", "regular-400", "solid-900", "v4compatibility"))
ASSETS: tuple[Asset, ...] = (
    # dvc_render's page (DVC 3.x) and GX's validation pages
    Asset("vega", "5.20.2", "build/vega.min.js",
          ("https://cdn.jsdelivr.net/npm/vega@5.20.2", "https://cdn.jsdelivr.net/npm/vega@5")),
    Asset("vega-lite", "5.2.0", "build/vega-lite.min.js",
          ("https://cdn.jsdelivr.net/npm/vega-lite@5.2.0", "https://cdn.jsdelivr.net/npm/vega-lite@5")),
    Asset("vega-embed", "6.18.2", "build/vega-embed.min.js",
          ("https://cdn.jsdelivr.net/npm/vega-embed@6.18.2", "https://cdn.jsdelivr.net/npm/vega-embed@6")),
    # Great Expectations 1.x Data Docs
    Asset("jquery", "3.7.1", "dist/jquery.min.js", ("https://code.jquery.com/jquery-3.7.1.min.js",)),
    Asset("popper.js", "1.12.9", "dist/umd/popper.min.js",
          ("https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",)),
    Asset("bootstrap", "4.3.1", "dist/js/bootstrap.min.js",
          ("https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",)),
    Asset("bootstrap", "4.3.1", "dist/css/bootstrap.min.css",
          ("https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",)),
    Asset("bootstrap-table", "1.19.1", "dist/bootstrap-table.min.js",
          ("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js",)),
    Asset("bootstrap-table", "1.19.1", "dist/bootstrap-table.min.css",
          ("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css",)),
    Asset("bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
          ("https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
           "bootstrap-table-filter-control.min.js",)),
    # GX asks for the 1.19.0 stylesheet of the extension next to the 1.19.1 script: the 1.19.1 one serves
    Asset("bootstrap-table", "1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
          ("https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
           "bootstrap-table-filter-control.css",
           "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
           "bootstrap-table-filter-control.min.css")),
    Asset("bootstrap-datepicker", "1.9.0", "dist/js/bootstrap-datepicker.min.js",
          ("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js",)),
    Asset("bootstrap-datepicker", "1.9.0", "dist/css/bootstrap-datepicker.min.css",
          ("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css",)),
    Asset("@forevolve/bootstrap-dark", "1.1.0", "dist/css/bootstrap-prefers-dark.min.css",
          ("https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",)),
    Asset("@fortawesome/fontawesome-free", "6.6.0", "css/all.min.css",
          ("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css",), extra=_FA_FONTS),
)
BY_URL = {u: a for a in ASSETS for u in a.urls}
# <script ... src="URL"> and <link ... href="URL"> with an absolute http(s) address
_TAG = re.compile(r"""(<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*)(["'])(https?://[^"']+)\2""", re.I)


# Images GX's pages load from its S3 bucket (the navbar logo, with a clock in its query string, and a CSS
# background): pointed at the copies GX writes into the site itself (root-relative paths)
SITE_IMAGES = {
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png": "static/images/logo-long.png",
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png":
        "static/images/logo-long.png",
}
_IMAGE = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*["']|url\(\s*["']?)(https?://[^"'?)\s]+)(\?[^"')\s]*)?""", re.I)


def _local_images(text: str, to_root: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with the known site images pointed at the site's own copies; unknown external images listed."""
    unknown: list[str] = []

    def sub(m: re.Match) -> str:
        local = SITE_IMAGES.get(m.group(2))
        if local is None or not (root / local).exists():
            unknown.append(m.group(2))
            return m.group(0)
        return f"{m.group(1)}{to_root}/{local}"

    return _IMAGE.sub(sub, text), unknown


def _copy(asset: Asset, dest_root: Path) -> None:
    base = asset.folder
    for rel in (asset.file, *asset.extra):
        src, dst = VENDOR / base / rel, dest_root / base / rel
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: run `python scripts/vendor_web_assets.py` (npm)")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def rewrite_html(text: str, to_vendor: str) -> tuple[str, list[Asset], list[str]]:
    """``text`` with known CDN assets pointed at ``to_vendor``/<package@version>/<file>.

    Returns (new text, assets used, external asset addresses left as they were)."""
    used: list[Asset] = []
    unknown: list[str] = []

    def sub(m: re.Match) -> str:
        asset = BY_URL.get(m.group(3))
        if asset is None:
            unknown.append(m.group(3))
            return m.group(0)
        used.append(asset)
        return f"{m.group(1)}{m.group(2)}{to_vendor}/{asset.local}{m.group(2)}"

    return _TAG.sub(sub, text), used, unknown


def make_offline(root: Path) -> dict:
    """Rewrite every .html under ``root`` to local copies in ``root/_vendor``; returns what it did."""
    root = Path(root)
    pages, unknown, used = 0, set(), {}
    for page in sorted(root.rglob("*.html")):
        if LOCAL_DIR in page.relative_to(root).parts:
            continue
        text = page.read_text(encoding="utf-8")
        rel = Path(os.path.relpath(root / LOCAL_DIR, page.parent)).as_posix()
        new, assets, left = rewrite_html(text, rel)
        new, left_images = _local_images(new, Path(os.path.relpath(root, page.parent)).as_posix(), root)
        unknown.update(left, left_images)
        for a in assets:
            used[a.local] = a
        if new != text:
            page.write_text(new, encoding="utf-8")
            pages += 1
    for a in used.values():
        _copy(a, root / LOCAL_DIR)
    return {"pages_rewritten": pages, "assets": sorted(used), "external_left": sorted(unknown)}


PAGE_HEADING = ("<h1 style='font-family:sans-serif'>seppo: metrics per round and training curves</h1>"
                "<p style='font-family:sans-serif'>From <code>dvc plots show</code> (dvc.yaml's plots): each scorer's "
                "mean per checkpoint with its 95% CI bounds dashed (round 0 = the base model), then each training "
                "series per update with the rounds overlaid. Numbers with their settings: reports/report.html.</p>")


def dvc_plots_page(out: Path, repo: Path = Path(".")) -> dict:
    """`dvc plots show -o out` with its vega scripts pointed at local copies (an offline page)."""
    out = Path(out).resolve()
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL)
    page = out / "index.html"
    text = page.read_text(encoding="utf-8")
    if "<meta charset" not in text.lower():  # dvc's page names no encoding: labels turn to mojibake
        text = text.replace("<head>", '<head>\n    <meta charset="utf-8">', 1)
    if PAGE_HEADING not in text:  # dvc's page has no heading: say what the figures are
        text = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + PAGE_HEADING, text, count=1)
    page.write_text(text, encoding="utf-8")
    return {"page": str(page), **make_offline(out)}
