"""CI validation of the committed results (runs on a clean clone: no DVC cache needed).

- every metrics JSON is present and finite;
- the evaluation summary recomputed from the committed tidy scores equals the committed metrics
  (tolerance 1e-9: the bootstrap is seeded);
- the report regenerated from committed inputs is byte-identical to the committed report;
- `dvc status report` is clean: the report is not stale with respect to dvc.lock.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from seppo.config import load_params
from seppo.evaluation.stats import bootstrap_mean, paired_win_rate
from seppo.reports.build import run_report

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9
pytestmark = pytest.mark.skipif(not (ROOT / "reports/metrics/eval.json").exists(), reason="no committed run")


def _numbers(x, path="$"):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, x


def test_metrics_present_and_finite():
    params = load_params(ROOT / "params.yaml")
    names = ["world", "base_model", "base_samples", "ingest", "validate", "cache", "eval"]
    names += [f"round_{k}" for k in range(1, params.train.rounds + 1)]
    for n in names:
        p = ROOT / "reports/metrics" / f"{n}.json"
        assert p.exists(), f"missing {p}"
        for where, v in _numbers(json.loads(p.read_text())):
            assert math.isfinite(v), f"{p}: {where} = {v}"


def test_eval_metrics_recompute_from_committed_scores():
    params = load_params(ROOT / "params.yaml").evaluate
    committed = json.loads((ROOT / "reports/metrics/eval.json").read_text())["metrics"]
    scores = pd.read_parquet(ROOT / "reports/eval/scores.parquet")
    for (ckpt, metric), g in scores.groupby(["checkpoint", "metric"]):
        wide = g.pivot(index="prompt_id", columns="seed", values="value").sort_index()
        mean, lo, hi = bootstrap_mean(wide.to_numpy(), params.n_boot, params.seed)
        c = committed[ckpt][metric]
        assert abs(c["mean"] - mean) < 1e-6 and abs(c["ci95"][0] - lo) < 1e-6 and abs(c["ci95"][1] - hi) < 1e-6
        if ckpt != "base":
            base = scores[(scores.checkpoint == "base") & (scores.metric == metric)]
            bw = base.pivot(index="prompt_id", columns="seed", values="value").loc[wide.index, wide.columns]
            w, _, _ = paired_win_rate(wide.to_numpy(), bw.to_numpy(), params.n_boot, params.seed)
            assert abs(c["win_rate_vs_base"] - w) < 1e-6


def test_report_regenerates_byte_identical(tmp_path):
    params = load_params(ROOT / "params.yaml")
    shutil.copytree(ROOT / "reports", tmp_path / "reports", ignore=shutil.ignore_patterns("data_docs", "figures"))
    shutil.copytree(ROOT / "runs", tmp_path / "runs", ignore=shutil.ignore_patterns("state"))
    run_report(params, tmp_path)
    for name in ("report.md", "report.html"):
        assert (tmp_path / "reports" / name).read_bytes() == (ROOT / "reports" / name).read_bytes(), name


def test_report_is_not_stale_against_dvc_lock():
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "report", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout or "{}")
    assert "report" not in status, f"report stage is stale: {status.get('report')}"


@pytest.mark.skipif(not (ROOT / "reports/study/aggregate.csv").exists(), reason="no committed study")
@pytest.mark.slow
def test_study_aggregate_recomputes_from_committed_runs(tmp_path):
    """The committed study table equals the one recomputed from the committed per-run records."""
    from seppo.study.aggregate import run_aggregate

    params = load_params(ROOT / "params.yaml")
    # every study folder (one per theta_0: the runs of one machine type), study.out among them
    for out in sorted(p.parent.relative_to(ROOT) for p in (ROOT / "reports/study").glob("**/runs")):
        p = params.model_copy(update={"study": params.study.model_copy(update={"out": str(out)})})
        shutil.copytree(ROOT / out / "runs", tmp_path / out / "runs")
        run_aggregate(p, tmp_path)
        names = ["aggregate.csv", "aggregate.md", "oracle.csv"]
        # the sweep tables exist exactly when the committed runs hold sweep points
        for sweep in ("lr_sweep.csv", "beta_sweep.csv", "auc_summary.csv"):
            assert (tmp_path / out / sweep).exists() == (ROOT / out / sweep).exists(), (out, sweep)
            names += [sweep] if (ROOT / out / sweep).exists() else []
        for name in names:
            assert (tmp_path / out / name).read_bytes() == (ROOT / out / name).read_bytes(), (out, name)


VIDEO_METRICS = ROOT / "reports/metrics/video_eval.json"


@pytest.mark.skipif(not VIDEO_METRICS.exists(), reason="no committed video run")
def test_video_metrics_are_finite_and_recompute_from_committed_scores():
    video = load_params(ROOT / "params.yaml").video
    for where, v in _numbers(json.loads(VIDEO_METRICS.read_text())):
        assert math.isfinite(v), f"{VIDEO_METRICS}: {where} = {v}"
    scores = pd.read_parquet(ROOT / "reports/video/eval/scores.parquet")
    summary = pd.read_csv(ROOT / "reports/video/eval/summary.csv")
    clip_rows = summary[summary.level == "clip"]
    assert {"base", "round_1", "sft_round_1"} <= set(clip_rows.checkpoint)
    for row in clip_rows.itertuples():
        mine = scores[scores.checkpoint == row.checkpoint]
        wide = mine.pivot(index="prompt_id", columns="seed", values=row.metric).sort_index()
        mean, lo, hi = bootstrap_mean(wide.to_numpy(float), video.n_boot, video.seed)
        csv_tol = 1e-6  # summary.csv holds 6 decimals
        assert abs(row.mean - mean) < csv_tol and abs(row.ci_low - lo) < csv_tol and abs(row.ci_high - hi) < csv_tol, row


def _video_status(stage: str) -> dict:
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", f"video/dvc.yaml:{stage}", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "{}")


@pytest.mark.skipif(not VIDEO_METRICS.exists(), reason="no committed video run")
@pytest.mark.parametrize("stage", ["video_evaluate", "video_report"])
def test_the_video_evaluation_and_report_are_not_stale_against_video_dvc_lock(stage):
    """Code, params and the git-tracked inputs match video/dvc.lock; DVC-cached data and models (the generated clips,
    the video world's real clips, the feature networks: absent in a clean clone) may only be missing, never
    different."""
    changed = []
    for entries in _video_status(stage).values():
        for entry in entries:
            for kind, paths in (entry.items() if isinstance(entry, dict) else []):
                for path, state in (paths.items() if isinstance(paths, dict) else []):
                    # DVC-cached data and models (clips, the embedded feature networks): absent in a clean clone
                    if not (state == "deleted" and path.startswith(("data/", "models/"))):
                        changed.append((kind, path, state))
    assert not changed, f"{stage} is stale against video/dvc.lock: {changed}"


@pytest.mark.skipif(not (ROOT / "reports/study/aggregate.csv").exists(), reason="no committed study")
def test_committed_study_records_match_todays_params_hash():
    """A new params field outside the hashed sections must not make every recorded run look stale (a study
    would re-run all of them)."""
    from seppo.study.records import plan_runs

    params = load_params(ROOT / "params.yaml")
    planned = {r.name: r.params_hash for r in plan_runs(params)}
    folders = sorted(p.parent for p in (ROOT / "reports/study").glob("**/runs"))  # one study folder per theta_0
    assert ROOT / params.study.out in folders
    for folder in folders:
        records = {p.stem: json.loads(p.read_text())["params_hash"] for p in (folder / "runs").glob("*.json")}
        assert records and all(records[n] == planned[n] for n in records if n in planned), \
            (folder, {n: (records[n], planned[n]) for n in records if n in planned and records[n] != planned[n]})


def test_results_page_and_readme_headline_are_regenerated_from_the_committed_outputs():
    """docs/results.md and the README's headline table are what `seppo results` makes of the committed outputs."""
    from seppo.reports.results import run_results

    assert run_results(load_params(ROOT / "params.yaml"), ROOT, check=True) == {"stale": []}, \
        "docs/results.md or the README's headline is stale: run `seppo results`"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: details go to docs/"
    section = "\n".join(lines).split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in block] == [["make", "repro"], ["make", "test"]]
