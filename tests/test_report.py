"""The report is regenerated from tracked outputs only, byte for byte, with numbers and settings."""

import json

import pandas as pd

from seppo.config import parse_params
from seppo.reports.build import run_report


def make_tree(root):
    (root / "reports/metrics").mkdir(parents=True)
    (root / "reports/eval").mkdir()
    (root / "reports/metrics/ingest.json").write_text(json.dumps(
        {"rows_in": 12, "kept": 7, "tie": 1, "excluded": 0, "duplicate": 1, "quarantined": 1, "lost": 2,
         "losers_kept": 7, "unreadable_shards": 1, "conversions": {"PNG RGBA->RGB": 2}}))
    (root / "reports/metrics/eval.json").write_text(json.dumps(
        {"settings": {"prompts": "embedded", "n_prompts": 4, "seeds": [0, 1], "sampler": "ddim", "steps": 20,
                      "guidance": 7.5, "n_boot": 1000, "ci": "95% percentile bootstrap over prompts"}}))
    pd.DataFrame([
        {"checkpoint": "base", "round": 0, "metric": "shapeland_utility", "mean": 0.32, "ci_low": 0.29,
         "ci_high": 0.35, "n_images": 8},
        {"checkpoint": "round_1", "round": 1, "metric": "shapeland_utility", "mean": 0.36, "ci_low": 0.33,
         "ci_high": 0.39, "n_images": 8, "win_rate_vs_base": 0.6, "win_ci_low": 0.5, "win_ci_high": 0.7},
    ]).to_csv(root / "reports/eval/summary.csv", index=False)
    # per (prompt, seed) scores: round_1 minus base is +0.02 on prompt p0 and +0.06 on p1 (both seeds)
    base = {("p0", 0): 0.30, ("p0", 1): 0.34, ("p1", 0): 0.31, ("p1", 1): 0.33}
    gain = {"p0": 0.02, "p1": 0.06}
    pd.DataFrame([{"checkpoint": c, "round": r, "prompt_id": p, "seed": sd, "metric": "shapeland_utility",
                   "value": v + (gain[p] if r else 0.0)}
                  for c, r in (("base", 0), ("round_1", 1)) for (p, sd), v in base.items()]
                 ).to_parquet(root / "reports/eval/scores.parquet")
    live = root / "runs/round_1/live/plots/metrics/train"
    live.mkdir(parents=True)
    for key in ("loss", "flip_rate", "implicit_acc"):
        (live / f"{key}.tsv").write_text(f"step\t{key}\n0\t0.69\n1\t0.5\n")
    (root / "reports/metrics/round_1.json").write_text(json.dumps(
        {"round": 1, "reference": "models/base", "mean_loss": 0.7, "mean_flip_rate": 0.4,
         "mean_implicit_acc": 0.55, "mean_samples_per_s": 40.0}))


def test_report_is_byte_identical_and_carries_numbers(tmp_path):
    make_tree(tmp_path)
    params = parse_params({"train": {"rounds": 1}})
    run_report(params, tmp_path)
    md1 = (tmp_path / "reports/report.md").read_bytes()
    html1 = (tmp_path / "reports/report.html").read_bytes()
    figs1 = {p.name: p.read_bytes() for p in (tmp_path / "reports/figures").iterdir()}
    run_report(params, tmp_path)
    assert (tmp_path / "reports/report.md").read_bytes() == md1
    assert (tmp_path / "reports/report.html").read_bytes() == html1
    assert {p.name: p.read_bytes() for p in (tmp_path / "reports/figures").iterdir()} == figs1
    md = md1.decode()
    # the paired difference by hand: mean of +0.02 and +0.06; with two prompts every bootstrap mean is one of
    # 0.02, 0.04, 0.06, so the 95% interval is their extremes
    assert ("| round_1 | shapeland_utility | 0.360 | [0.330, 0.390] | +0.040 | [+0.020, +0.060] | 0.600 | "
            "[0.500, 0.700] |") in md
    assert "| base | shapeland_utility | 0.320 | [0.290, 0.350] | (the base) | | (the base) | |" in md
    assert "1 round x" in md and "1 rounds" not in md
    assert "ddim 20 steps, guidance 7.5" in md and "| 12 | 7 | 1 | 0 | 1 | 1 | 2 | 7 | 1 |" in md
    assert "Winners converted to RGB: PNG RGBA->RGB 2." in md
    assert {"rounds_shapeland_utility.png", "train_loss.png", "train_flip_rate.png"} <= set(figs1)
    page = html1.decode()
    assert "http" not in page.replace("http-equiv", "")  # self-contained: no external resources
    assert page.count("data:image/png;base64,") == len(figs1)


def _page(tmp_path, rounds_extra=None, flip="0\t0.0\n1\t0.0\n", criterion="none"):
    make_tree(tmp_path)
    live = tmp_path / "runs/round_1/live/plots/metrics/train"
    (live / "flip_rate.tsv").write_text("step\tflip_rate\n" + flip)
    if rounds_extra:
        r = json.loads((tmp_path / "reports/metrics/round_1.json").read_text())
        (tmp_path / "reports/metrics/round_1.json").write_text(json.dumps({**r, **rounds_extra}))
    params = parse_params({"train": {"rounds": 1, "criterion": criterion}})
    run_report(params, tmp_path)
    return (tmp_path / "reports/report.md").read_text(), (tmp_path / "reports/report.html").read_text()


def test_html_comes_from_a_markdown_renderer(tmp_path):
    md, page = _page(tmp_path)
    # table headers are header cells, not data rows; the separator row is not rendered
    assert "<th>checkpoint</th>" in page and "<th>rows in</th>" in page
    assert "<td>checkpoint</td>" not in page and "---" not in page
    # inline code is code, not literal backticks
    assert "<code>shapeland_utility</code>" in page and "`" not in page.split("<body>")[1]
    # grids and curves under their own headings
    assert "<h2>Evaluation curves</h2>" in page and "<h2>Training curves</h2>" in page


def test_flip_rate_that_never_flips_is_said_not_drawn_flat(tmp_path):
    md, _ = _page(tmp_path)
    assert ("*`flip_rate` is 0 at every update of 1 round (criterion `none` learns every reference sample as a "
            "loser): no figure.*") in md
    assert "train_flip_rate" not in md and not (tmp_path / "reports/figures/train_flip_rate.png").exists()
    md, _ = _page(tmp_path / "b", flip="0\t0.0\n1\t0.25\n", criterion="sign")
    assert "is 0 at every update" not in md and "training `flip_rate` per update, rounds overlaid." in md
    assert (tmp_path / "b/reports/figures/train_flip_rate.png").exists()


def test_a_figure_no_longer_drawn_does_not_linger(tmp_path):
    _page(tmp_path, flip="0\t0.0\n1\t0.25\n", criterion="sign")
    assert (tmp_path / "reports/figures/train_flip_rate.png").exists()
    run_report(parse_params({"train": {"rounds": 1, "criterion": "none"}}), tmp_path)  # flip_rate stays 0.25
    (tmp_path / "runs/round_1/live/plots/metrics/train/flip_rate.tsv").write_text("step\tflip_rate\n0\t0.0\n")
    run_report(parse_params({"train": {"rounds": 1, "criterion": "none"}}), tmp_path)
    assert not (tmp_path / "reports/figures/train_flip_rate.png").exists()


def test_the_page_fits_its_width_and_names_its_inputs(tmp_path):
    import hashlib

    md, page = _page(tmp_path)
    assert "img{max-width:100%;height:auto" in page  # grids shrink to the page instead of being cut
    assert page.count("<div class='tw'><table>") == page.count("<table>")  # wide tables scroll in their box
    digest = hashlib.md5((tmp_path / "reports/eval/summary.csv").read_bytes()).hexdigest()
    assert "## Provenance" in md and f"- `reports/eval/summary.csv`: md5 `{digest}`" in md


def test_anchor_vs_oracle_table_only_when_logged(tmp_path):
    md, _ = _page(tmp_path)
    assert "Anchor vs oracle" not in md
    md, page = _page(tmp_path / "b", {"oracle_flip_rate": 0.25, "anchor_flip_rate": 0.5, "anchor_auc": 0.625})
    assert "| round | oracle flip rate | anchor flip rate | anchor AUC vs oracle |" in md
    assert "| 1 | 0.250 | 0.500 | 0.625 |" in md
    assert "anchor accuracy" not in md and "<th>anchor AUC vs oracle</th>" in page


def test_grids_have_their_own_headings(tmp_path):
    import numpy as np
    from PIL import Image

    make_tree(tmp_path)
    for sub in ("eval", "base_model"):
        (tmp_path / "reports" / sub).mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tmp_path / "reports" / sub / "grid.png")
    run_report(parse_params({"train": {"rounds": 1}}), tmp_path)
    md = (tmp_path / "reports/report.md").read_text()
    ev = md.index("## Evaluation images: base model vs each round")
    base = md.index("## Base model samples")
    assert ev < md.index("(eval/grid.png)") < base < md.index("(base_model/grid.png)")


def test_study_section_only_when_a_study_has_run(tmp_path):
    from tests.test_study_stats import STUDY, _write_runs

    from seppo.study.aggregate import run_aggregate

    make_tree(tmp_path)
    params = parse_params({**STUDY, "train": {"rounds": 1}})
    run_report(params, tmp_path)
    md = (tmp_path / "reports/report.md").read_text()
    assert "Study" not in md
    _write_runs(tmp_path, params, {"none": 0.05, "sign": 0.1})
    run_report(params, tmp_path)
    assert (tmp_path / "reports/report.md").read_text() == md  # records but no aggregate yet: unchanged
    run_aggregate(params, tmp_path)
    run_report(params, tmp_path)
    md2 = (tmp_path / "reports/report.md").read_text()
    assert "## Study (ablation, multi-seed)" in md2 and "| SePPO | 21.57 | sign |" in md2
    assert "![study_shapeland_utility](study/curves_shapeland_utility.png)" in md2
    assert (tmp_path / "reports/report.html").read_text().count("data:image/png;base64,") == md2.count("![")
