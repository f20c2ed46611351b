"""Pages that must render offline: the report, the `dvc plots` page, Great Expectations' Data Docs.

The headless checks run in Chromium with the network cut (tests/headless.py) and look at what a
person would see: figures drawn (vega's SVG/canvas nodes, a figure's line colour in a screenshot).
"""

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import pytest

from seppo.webassets.offline import ASSETS, BY_URL, VENDOR, dvc_plots_page, make_offline, rewrite_html
from tests.headless import dump_dom, has_colour, needs_chromium, screenshot

VEGA = "https://cdn.jsdelivr.net/npm/vega@5.20.2"


def test_rewrite_points_known_cdn_assets_at_local_copies_and_reports_the_rest():
    page = (f'<head><script src="{VEGA}"></script>\n<link rel="stylesheet"\n href='
            f'"https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css">'
            '<script src="https://example.org/x.js"></script></head>'
            '<body><a href="https://code.jquery.com/jquery-3.7.1.min.js">a link, not an asset</a></body>')
    new, used, left = rewrite_html(page, "../_vendor")
    assert '<script src="../_vendor/vega@5.20.2/build/vega.min.js">' in new
    assert 'href="../_vendor/bootstrap@4.3.1/dist/css/bootstrap.min.css"' in new
    assert left == ["https://example.org/x.js"] and '<script src="https://example.org/x.js">' in new
    assert '<a href="https://code.jquery.com/jquery-3.7.1.min.js">' in new  # only script/link tags
    assert [a.package for a in used] == ["vega", "bootstrap"]


def test_make_offline_copies_what_nested_pages_use(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "index.html").write_text(f'<script src="{VEGA}"></script>')
    (tmp_path / "a/b/page.html").write_text(
        '<link href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css" rel="stylesheet">')
    res = make_offline(tmp_path)
    assert res["pages_rewritten"] == 2 and res["external_left"] == []
    assert '"../../_vendor/@fortawesome__fontawesome-free@6.6.0/css/all.min.css"' in (tmp_path / "a/b/page.html").read_text()
    copied = sorted(p.relative_to(tmp_path / "_vendor").as_posix() for p in (tmp_path / "_vendor").rglob("*")
                    if p.is_file())
    fonts = [f"@fortawesome__fontawesome-free@6.6.0/webfonts/fa-{n}.woff2"
             for n in ("brands-400", "regular-400", "solid-900", "v4compatibility")]
    assert copied == sorted(["vega@5.20.2/build/vega.min.js", "@fortawesome__fontawesome-free@6.6.0/css/all.min.css",
                             *fonts])
    assert (tmp_path / "_vendor/vega@5.20.2/build/vega.min.js").read_bytes() == \
        (VENDOR / "vega@5.20.2/build/vega.min.js").read_bytes()
    assert make_offline(tmp_path)["pages_rewritten"] == 0  # idempotent


def test_vendored_files_match_their_manifest():
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    for a in ASSETS:
        for rel in (a.file, *a.extra):
            assert f"{a.folder}/{rel}" in manifest, rel
    for rel, sha in manifest.items():
        assert hashlib.sha256((VENDOR / rel).read_bytes()).hexdigest() == sha, rel


def test_every_cdn_asset_of_the_installed_gx_and_dvc_pages_is_vendored():
    """A GX or DVC upgrade that asks for another file or version fails here, not offline."""
    import dvc_render
    import great_expectations

    tag = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["'](https?://[^"']+)["']""", re.I)
    found = set()
    for pkg, sub in ((great_expectations, "render"), (dvc_render, "")):
        root = Path(pkg.__file__).parent / sub
        for f in list(root.rglob("*.j2")) + list(root.rglob("*.py")) + list(root.rglob("*.html")):
            found.update(tag.findall(f.read_text(errors="ignore")))
    assert VEGA in found and "https://code.jquery.com/jquery-3.7.1.min.js" in found
    # dvc_render's plotly renderer draws no plot of this project (its plots are vega-lite)
    unused = {"https://cdn.plot.ly/plotly-latest.min.js"}
    assert unused <= found and sorted(found - set(BY_URL) - unused) == []


def _dvc_repo(root: Path) -> None:
    import subprocess
    import sys

    root.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    (root / "curve.csv").write_text("round,a,b\n0,0.4,40\n1,0.5,48\n2,0.45,45\n")
    (root / "dvc.yaml").write_text(
        "plots:\n- fig_a:\n    x: round\n    y:\n      curve.csv: a\n"
        "- fig_b:\n    x: round\n    y:\n      curve.csv: b\n")


@needs_chromium
@pytest.mark.slow
def test_dvc_plots_page_renders_offline(tmp_path):
    _dvc_repo(tmp_path / "repo")
    res = dvc_plots_page(tmp_path / "page", tmp_path / "repo")
    assert res["external_left"] == [] and len(res["assets"]) == 3
    page = tmp_path / "page/index.html"
    dom = dump_dom(page)
    assert dom.count('role="graphics-document"') == 2  # both figures drawn by vega
    # the same page as dvc writes it (scripts from the CDN) draws nothing offline
    cdn = tmp_path / "page/cdn.html"
    cdn.write_text(page.read_text().replace('src="_vendor/vega@5.20.2/build/vega.min.js"', f'src="{VEGA}"'))
    assert dump_dom(cdn).count('role="graphics-document"') == 0
    shot = screenshot(page, tmp_path / "shot.png", 1200, 900)
    assert has_colour(shot, (148, 90, 210), tol=40, min_pixels=200)  # vega's line colour in DVC's theme


@needs_chromium
def test_report_page_shows_its_tables_and_figures(tmp_path):
    from PIL import Image

    from seppo.config import parse_params
    from seppo.reports.build import run_report
    from tests.test_report import make_tree

    make_tree(tmp_path)
    grid = np.zeros((60, 90, 3), np.uint8)
    grid[...] = (230, 20, 140)  # a colour no other part of the page uses
    (tmp_path / "reports/eval/grid.png").parent.mkdir(exist_ok=True)
    Image.fromarray(grid).save(tmp_path / "reports/eval/grid.png")
    run_report(parse_params({"train": {"rounds": 1}}), tmp_path)
    page = tmp_path / "reports/report.html"
    dom = dump_dom(page)
    assert dom.count("<table>") >= 3 and "<th>checkpoint</th>" in dom
    assert dom.count('src="data:image/png;base64,') == 1 + len(list((tmp_path / "reports/figures").iterdir()))
    shot = screenshot(page, tmp_path / "shot.png", 1500, 6000)
    assert has_colour(shot, (230, 20, 140), tol=6, min_pixels=60 * 90 // 2)  # the grid, at 100% zoom
    assert has_colour(shot, (0x1F, 0x5F, 0xA8), tol=20, min_pixels=100)  # the evaluation curve


def test_round_plots_have_integer_ticks_dashed_ci_and_the_page_a_heading(tmp_path):
    """dvc.yaml's eval plots use .dvc/plots/seppo_rounds.json: whole-number round ticks, CI bounds dashed."""
    import shutil
    import subprocess
    import sys

    import yaml

    from seppo.webassets.offline import PAGE_HEADING

    repo = tmp_path / "repo"
    _dvc_repo(repo)
    (repo / ".dvc/plots").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".dvc/plots/seppo_rounds.json", repo / ".dvc/plots/seppo_rounds.json")
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    evals = [next(iter(p.values())) for p in plots if next(iter(p)).startswith("eval_")]
    assert evals and all(e["template"] == "seppo_rounds" for e in evals)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": [{"fig": {
        "x": "round", "y": {"curve.csv": ["a", "b"]}, "template": "seppo_rounds"}}]}))
    out = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    content = json.loads(out)["data"]["fig"][0]["content"]
    assert content["encoding"]["x"]["axis"] == {"tickMinStep": 1, "format": "d"}
    assert content["encoding"]["strokeDash"]["field"] == "field"  # one dash pattern per series (mean, CI bounds)
    dvc_plots_page(tmp_path / "page", repo)
    assert PAGE_HEADING in (tmp_path / "page/index.html").read_text()
