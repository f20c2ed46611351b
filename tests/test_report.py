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
    assert "| round_1 | shapeland_utility | 0.360 | [0.330, 0.390] | 0.600 | [0.500, 0.700] |" in md
    assert "ddim 20 steps, guidance 7.5" in md and "| 12 | 7 | 1 | 0 | 1 | 1 | 2 | 7 | 1 |" in md
    assert "Winners converted to RGB: PNG RGBA->RGB 2." in md
    assert {"rounds_shapeland_utility.png", "train_loss.png", "train_flip_rate.png"} <= set(figs1)
    page = html1.decode()
    assert "http" not in page.replace("http-equiv", "")  # self-contained: no external resources
    assert page.count("data:image/png;base64,") == len(figs1)
