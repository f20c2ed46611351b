"""The evaluate stage: every scorer over every checkpoint's stored images; tidy table, CIs, plots data.

Outputs
  reports/eval/scores.parquet      tidy: checkpoint, round, prompt_id, seed, metric, value
  reports/eval/summary.csv         per checkpoint and metric: mean, 95% CI, win rate vs base + CI
  reports/eval/grid.png            the same prompts and seeds: base vs each round
  reports/metrics/eval.json        the summary, with every setting next to the numbers (DVC metrics)
  reports/plots/eval_rounds.csv    per-checkpoint curves (DVC plots): one row per checkpoint, one column
                                   group per scorer (<scorer>, <scorer>_ci_low, <scorer>_ci_high), so each
                                   scorer is its own series on its own scale
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import EvaluateConfig
from ..io_utils import atomic_dir, atomic_path, write_json
from ..progress import progress
from .generate import decode_png
from .scorers import build_scorers
from .stats import bootstrap_mean, paired_win_rate


def _round_of(name: str) -> int:
    return 0 if name == "base" else int(name.rsplit("_", 1)[1])


def run_evaluate(cfg: EvaluateConfig, image_dirs: list[Path], out: Path, metrics: Path, plots: Path) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorers = build_scorers(cfg.scorers, cfg.models.model_dump(), device, cfg.batch_size)
    tables, settings, image_tables = [], {}, {}
    counts = [json.loads((d / "settings.json").read_text())["images"] for d in image_dirs]
    with progress(sum(counts) * len(scorers), "evaluate", unit="img") as bar:
        for d in image_dirs:
            s = json.loads((d / "settings.json").read_text())
            settings[s["name"]] = s
            t = image_tables[s["name"]] = pd.read_parquet(d / "images.parquet")
            images = [decode_png(b) for b in t.png]
            for sc in scorers:
                bar.set_postfix(checkpoint=s["name"], scorer=sc.name)
                vals = np.asarray(sc.score(images, t.prompt.tolist()), dtype=float)
                tables.append(pd.DataFrame({"checkpoint": s["name"], "round": _round_of(s["name"]),
                                            "prompt_id": t.prompt_id, "seed": t.seed, "metric": sc.name,
                                            "value": vals}))
                bar.update(len(images))
    scores = pd.concat(tables, ignore_index=True)
    if not np.isfinite(scores.value).all():
        bad = scores[~np.isfinite(scores.value)].head(5)
        raise ValueError(f"non-finite scores (first rows):\n{bad}")
    summary_rows = []
    for (ckpt, metric), g in scores.groupby(["checkpoint", "metric"], sort=False):
        wide = g.pivot(index="prompt_id", columns="seed", values="value").sort_index()
        mean, lo, hi = bootstrap_mean(wide.to_numpy(), cfg.n_boot, cfg.seed)
        row = {"checkpoint": ckpt, "round": _round_of(ckpt), "metric": metric, "mean": mean,
               "ci_low": lo, "ci_high": hi, "n_images": len(g)}
        if ckpt != "base" and "base" in settings:
            base = scores[(scores.checkpoint == "base") & (scores.metric == metric)]
            bw = base.pivot(index="prompt_id", columns="seed", values="value").loc[wide.index, wide.columns]
            w, wl, wh = paired_win_rate(wide.to_numpy(), bw.to_numpy(), cfg.n_boot, cfg.seed)
            row.update(win_rate_vs_base=w, win_ci_low=wl, win_ci_high=wh)
        summary_rows.append(row)
    summary = pd.DataFrame(summary_rows).sort_values(["metric", "round"]).reset_index(drop=True)
    # the whole folder is swapped in at once: a kill leaves the old folder or the new, never a mix
    with atomic_dir(out) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        summary.to_csv(tmp / "summary.csv", index=False, float_format="%.6f")
        _grid(cfg, image_tables, scores, tmp / "grid.png")
    with atomic_path(plots) as tmp:
        plot_table(summary).to_csv(tmp, index=False, float_format="%.6f")
    first = next(iter(settings.values()))
    result = {
        "settings": {"prompts": cfg.prompts, "split": cfg.split, "n_prompts": first["n_prompts"],
                     "seeds": cfg.seeds, **cfg.sampling.model_dump(), "n_boot": cfg.n_boot,
                     "ci": "95% percentile bootstrap over prompts"},
        "checkpoints": {n: s["checkpoint"] for n, s in settings.items()},
        "metrics": {
            r.checkpoint: {} for r in summary.itertuples()
        },
    }
    for r in summary.itertuples():
        entry = {"mean": round(r.mean, 6), "ci95": [round(r.ci_low, 6), round(r.ci_high, 6)]}
        if "win_rate_vs_base" in summary.columns and not pd.isna(getattr(r, "win_rate_vs_base", np.nan)):
            entry["win_rate_vs_base"] = round(r.win_rate_vs_base, 6)
            entry["win_rate_ci95"] = [round(r.win_ci_low, 6), round(r.win_ci_high, 6)]
        result["metrics"][r.checkpoint][r.metric] = entry
    write_json(metrics, result)
    return result


def plot_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Wide per-checkpoint table: columns round, checkpoint, then <scorer>, <scorer>_ci_low/_ci_high."""
    wide = summary.pivot(index=["round", "checkpoint"], columns="metric", values=["mean", "ci_low", "ci_high"])
    out = pd.DataFrame(index=wide.index)
    for metric in sorted(summary.metric.unique()):
        out[metric] = wide[("mean", metric)]
        out[f"{metric}_ci_low"] = wide[("ci_low", metric)]
        out[f"{metric}_ci_high"] = wide[("ci_high", metric)]
    return out.reset_index().sort_values("round").reset_index(drop=True)


def _grid(cfg, tabs: dict[str, pd.DataFrame], scores, path: Path) -> None:
    from ..imaging.grids import save_grid

    names = list(tabs)
    seed = cfg.seeds[0]
    base = tabs[names[0]]
    pids = base[base.seed == seed].prompt_id.tolist()[: cfg.grid_prompts]
    metric = cfg.scorers[0]
    images, notes = [], []
    for n in names:
        t = tabs[n].set_index(["prompt_id", "seed"])
        sc = scores[(scores.checkpoint == n) & (scores.metric == metric) & (scores.seed == seed)].set_index("prompt_id")
        images.append([decode_png(t.loc[(pid, seed), "png"]) for pid in pids])
        notes.append([f"{sc.value[pid]:.2f}" for pid in pids])
    prompts = base.set_index(["prompt_id", "seed"]).loc[[(pid, seed) for pid in pids], "prompt"].tolist()
    s = cfg.sampling
    save_grid(np.stack([np.stack(r) for r in images]), names, prompts, path, notes=notes,
              title=f"cell: {metric}; {s.sampler} {s.steps} steps, guidance {s.guidance}, seed {seed}")
