"""The evaluate stage: every scorer over every checkpoint's stored images; tidy table, CIs, plots data.

Outputs
  reports/eval/scores.parquet      tidy: checkpoint, round, prompt_id, seed, metric, value
  reports/eval/summary.csv         per checkpoint and metric: mean, 95% CI, win rate vs base + CI
  reports/eval/grid.png            the same prompts and seeds: base vs each round
  reports/metrics/eval.json        the summary, with every setting next to the numbers (DVC metrics)
  reports/plots/eval_rounds.csv    per-round curves (DVC plots)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import EvaluateConfig
from ..io_utils import atomic_dir, atomic_path, write_json
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
    for d in image_dirs:
        s = json.loads((d / "settings.json").read_text())
        settings[s["name"]] = s
        t = image_tables[s["name"]] = pd.read_parquet(d / "images.parquet")
        images = [decode_png(b) for b in t.png]
        for sc in scorers:
            vals = np.asarray(sc.score(images, t.prompt.tolist()), dtype=float)
            tables.append(pd.DataFrame({"checkpoint": s["name"], "round": _round_of(s["name"]),
                                        "prompt_id": t.prompt_id, "seed": t.seed, "metric": sc.name,
                                        "value": vals}))
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
        summary.to_csv(tmp, index=False, float_format="%.6f")
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


def _grid(cfg, tabs: dict[str, pd.DataFrame], scores, path: Path) -> None:
    from ..reports.grids import save_grid

    names = list(tabs)
    seed = cfg.seeds[0]
    base = tabs[names[0]]
    pids = base[base.seed == seed].prompt_id.tolist()[: cfg.grid_prompts]
    metric = cfg.scorers[0]
    images, titles = [], []
    for n in names:
        t = tabs[n].set_index(["prompt_id", "seed"])
        sc = scores[(scores.checkpoint == n) & (scores.metric == metric) & (scores.seed == seed)].set_index("prompt_id")
        for pid in pids:
            images.append(decode_png(t.loc[(pid, seed), "png"]))
            titles.append(f"{n}: {t.loc[(pid, seed), 'prompt']} | {metric}={sc.value[pid]:.2f}")
    s = cfg.sampling
    save_grid(np.stack(images), titles, path, cols=len(pids),
              title=f"rows: {', '.join(names)}; {s.sampler} {s.steps} steps, guidance {s.guidance}, seed {seed}")
