"""The video study (`seppo video-study`): the image study's runner and aggregate over the video arms.

What differs from the image study, and only that, lives here:

- a run trains one arm (its variant's train.loss: seppo | sft | dpo) of video/dvc.yaml for video_study.rounds
  rounds from models/video_base, and evaluates every round (`video_evaluate` is the experiment's target);
- video/dvc.yaml is planned per arm (video.arms = [arm]): the runs of one arm share a plan, so the runner
  works arm by arm (`runner.run_study` groups its runs by ``video.arms``);
- the record is read from the experiment's reports/video/eval (clip utility, PSNR, SSIM per prompt and sampling
  seed; FID / FVD per checkpoint, set-level) and the arm's round metrics, with the arm's checkpoint names
  (sft_round_k ...) mapped to round_k, so the image study's aggregate reads it unchanged.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from .. import layout as L
from ..config import Params, parse_params
from .records import Run, build_record

SECTION = "video_study"
SCORES = f"{L.VIDEO_EVAL}/scores.parquet"
SUMMARY = f"{L.VIDEO_EVAL}/summary.csv"
# the per-clip columns of reports/video/eval/scores.parquet -> the record's metric names
CLIP_METRICS = {"utility": "clip_utility", "psnr": "psnr", "ssim": "ssim"}
SET_METRICS = ("fid", "fvd")


def view(params: Params) -> Params:
    """The params as the image study's code reads them: ``study`` is the video study's section."""
    return params.model_copy(update={"study": params.video_study})


def run_arm(run: Run) -> str:
    return run.overrides["video.arms"][0]


def plan_text(params: Params, arm: str, rounds: int, branches: dict[str, Any] | None = None) -> str:
    """video/dvc.yaml for the runs of one arm: that arm only, ``rounds`` rounds, every round evaluated."""
    from ..planning.dvc import render_video

    data = params.model_dump() | {"train": params.train.model_dump() | (branches or {}) | {"rounds": rounds},
                                  "video": params.video.model_dump() | {"arms": [arm]}}
    return render_video(parse_params(data))


def tidy_scores(wide: pd.DataFrame, arm: str, rounds: int) -> pd.DataFrame:
    """reports/video/eval/scores.parquet (one row per clip, a column per metric) -> the image evaluation's tidy
    (checkpoint, prompt_id, seed, metric, value), the arm's rounds named round_k."""
    from ..layout import video_eval_name

    names = {"base": "base"} | {video_eval_name(arm, k): f"round_{k}" for k in range(1, rounds + 1)}
    need = {"checkpoint", "prompt_id", "seed", *CLIP_METRICS}
    if not need <= set(wide.columns):
        raise ValueError(f"{SCORES} lacks columns {sorted(need - set(wide.columns))}")
    unknown = sorted(set(wide.checkpoint) - set(names))
    if unknown:
        raise ValueError(f"{SCORES} holds checkpoints {unknown} that are not arm {arm}'s rounds 1..{rounds}")
    w = wide.assign(checkpoint=wide.checkpoint.map(names)).rename(columns=CLIP_METRICS)
    return w.melt(id_vars=["checkpoint", "prompt_id", "seed"], value_vars=list(CLIP_METRICS.values()),
                  var_name="metric", value_name="value")


def set_metrics(summary: pd.DataFrame, arm: str, rounds: int) -> dict[str, dict[str, float]]:
    """FID / FVD per checkpoint (set-level: one number per run, no prompt CI) from the evaluation's summary.csv."""
    from ..layout import video_eval_name

    names = {"base": "base"} | {video_eval_name(arm, k): f"round_{k}" for k in range(1, rounds + 1)}
    out: dict[str, dict[str, float]] = {}
    for r in summary[summary.metric.isin(SET_METRICS)].to_dict("records"):
        if r["checkpoint"] in names and pd.notna(r["mean"]):
            out.setdefault(names[r["checkpoint"]], {})[r["metric"]] = round(float(r["mean"]), 6)
    return out


def collect(read, run: Run, label: str, rounds: int, experiment: dict[str, Any]) -> dict:
    """The record of a finished video experiment; ``read(path) -> bytes | None`` reads its commit."""
    from ..layout import video_layout

    arm = run_arm(run)
    raw = read(SCORES)
    if raw is None:
        raise ValueError(f"{run.name}: experiment {experiment.get('rev', '')[:10]} has no {SCORES}")
    scores = tidy_scores(pd.read_parquet(io.BytesIO(raw)), arm, rounds)
    lay = video_layout(arm)
    rm = {}
    for k in range(1, rounds + 1):
        b = read(str(lay.metrics(k)))
        if b is not None:
            rm[k] = json.loads(b)
    rec = build_record(run, label, scores, rm, experiment)
    summary = read(SUMMARY)
    rec["arm"] = arm
    rec["set_metrics"] = set_metrics(pd.read_csv(io.BytesIO(summary)), arm, rounds) if summary else {}
    return rec


def set_metric_table(params: Params, records: list[dict]) -> pd.DataFrame:
    """FID / FVD per variant and round: mean over the training seeds and their range (set-level numbers: the
    spread over seeds is all there is; no prompt-level CI)."""
    import numpy as np

    rows = []
    st = params.video_study
    order = list(st.variants)
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["variant"], []).append(r)
    base_done = False
    for variant in sorted(by, key=lambda v: order.index(v) if v in order else len(order)):
        recs = by[variant]
        ks = sorted({c for r in recs for c in r.get("set_metrics", {})}, key=lambda c: (c != "base", c))
        for ckpt in ks:
            if ckpt == "base":
                if base_done:
                    continue
                base_done, name = True, next((n for n, v in st.variants.items() if not v.train), "base")
            else:
                name = variant
            for m in SET_METRICS:
                vals = [r["set_metrics"][ckpt][m] for r in recs if m in r.get("set_metrics", {}).get(ckpt, {})]
                if vals:
                    rows.append({"variant": name, "round": 0 if ckpt == "base" else int(ckpt.split("_")[1]),
                                 "metric": m, "n_seeds": len(vals), "mean": float(np.mean(vals)),
                                 "min": float(np.min(vals)), "max": float(np.max(vals))})
    return pd.DataFrame(rows)


def set_metric_markdown(params: Params, table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    st = params.video_study
    K = int(table["round"].max())
    g = table[(table["round"] == K) | (table["round"] == 0)]
    md = ["## FID / FVD (set-level, embedded-world; lower is better)", "",
          "One number per run and checkpoint (all clips of the run against the held-out real clips), so the only "
          "spread is over training seeds: mean [min, max]. Embedded-world feature networks (`seppo video-features`), "
          f"comparable between this project's checkpoints only. Round {K} (round 0 = theta_0, shared).", "",
          "| variant | seeds | FID | FVD |", "|---|---|---|---|"]
    for variant, h in g.groupby("variant", sort=False):
        label = st.variants[variant].label if variant in st.variants else variant
        cells = []
        for m in SET_METRICS:
            r = h[h.metric == m]
            cells.append("n/a" if r.empty else f"{r['mean'].iloc[0]:.2f} [{r['min'].iloc[0]:.2f}, "
                         f"{r['max'].iloc[0]:.2f}]")
        seeds = "shared" if (h["round"] == 0).all() else str(int(h.n_seeds.max()))
        md.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    return md + [""]


def stale_note(params: Params, root: Path = Path(".")) -> list[str]:
    """A warning for the reports when the committed video study was recorded under other params than today's
    (e.g. theta_0's recipe changed since): its records' params hash no longer matches the plan. Empty when every
    planned run's record matches (or no study has run)."""
    from .records import plan_runs, record_path, stale_records

    out = Path(root) / params.video_study.out
    recorded = [r for r in plan_runs(params, "video_study") if record_path(out, r).exists()]
    stale = stale_records(params, "video_study", out)
    if not stale:
        return []
    if len(stale) < len(recorded):  # the aggregate left them out (run_aggregate)
        return [f"**{len(stale)} of the {len(recorded)} recorded runs were made with other params than today's** "
                f"({', '.join(stale)}: another theta_0 or recipe) and are left out of the tables and "
                "curves below; `seppo video-study` re-runs them.", ""]
    return [f"**Stale: {len(stale)} of the {len(recorded)} recorded runs below were made with other params than "
            "today's** (their records' params hash differs from the plan's: e.g. the video base's recipe changed "
            "since), so the table and curves are those runs' theta_0 and arms, not today's; `seppo video-study` "
            "re-runs them.", ""]


def run_video_aggregate(params: Params, root: Path = Path(".")) -> dict:
    """The image study's aggregate over the video records (view(params)), then the FID / FVD table."""
    from ..io_utils import atomic_path
    from .aggregate import run_aggregate
    from .records import load_records, stale_records

    v = view(params)
    out = Path(root) / v.study.out
    stale = stale_records(params, "video_study", out)
    res = run_aggregate(v, root, title="# Video study (`seppo video-study`)", stale=stale)
    if not res.get("records"):
        return res
    table = set_metric_table(params, load_records(out, stale))
    with atomic_path(out / "set_metrics.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    md = (out / "aggregate.md").read_text().rstrip("\n").split("\n") + [""] + set_metric_markdown(params, table)
    with atomic_path(out / "aggregate.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return res
