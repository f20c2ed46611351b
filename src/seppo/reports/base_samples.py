"""The ``base_samples`` stage: theta_0 sampled on held-out prompts, scored with the ground truth.

Writes a per-image table, an image grid with captions and utilities, and metrics comparing the
base model's mean utility with that of the preference set's winners (the room left to align).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import BaseSamplesConfig
from ..io_utils import atomic_path, write_json
from ..models.pipeline import generate, load_pipeline, prompt_seed
from ..world.utility import utility
from ..imaging.grids import save_grid


def bootstrap_ci(values: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(n, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def run_base_samples(
    cfg: BaseSamplesConfig,
    model_dir: Path,
    prompts_path: Path,
    world_metrics: Path,
    out_dir: Path,
    metrics_path: Path,
) -> dict:
    prompts = pd.read_parquet(prompts_path)
    prompts = prompts[prompts["split"] == "eval"].head(cfg.prompts)
    pipe = load_pipeline(model_dir)
    rows = [(pid, cap, s) for s in cfg.seeds for pid, cap in zip(prompts["prompt_id"], prompts["caption"])]
    images = generate(pipe, [r[1] for r in rows], [r[2] for r in rows], cfg.sampling, progress="base-samples")
    records = []
    for (pid, cap, seed), img in zip(rows, images):
        res = utility(img, cap)
        records.append(
            {"prompt_id": pid, "caption": cap, "seed": seed, "sample_seed": prompt_seed(cap, seed), **res.as_row()}
        )
    table = pd.DataFrame.from_records(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "samples.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    first = table.index[table["seed"] == cfg.seeds[0]][: cfg.grid_prompts]
    s = cfg.sampling
    save_grid(
        images[first][None],
        ["theta_0 (base)"],
        [table.caption[i] for i in first],
        out_dir / "grid.png",
        notes=[[f"u = {table.utility[i]:.2f}" for i in first]],
        title=f"base model, {s.sampler} {s.steps} steps, guidance {s.guidance}, seed {cfg.seeds[0]}",
    )
    u = table["utility"].to_numpy()
    lo, hi = bootstrap_ci(u)
    winners = json.loads(Path(world_metrics).read_text())["pairs"]["winner_mean_utility"]
    metrics = {
        "utility_scale": "Shapeland ground-truth utility in [0, 1]",
        "base_mean_utility": float(u.mean()),
        "base_mean_utility_ci95": [lo, hi],
        "base_mean_fidelity": float(table["fidelity"].mean()),
        "base_mean_quality": float(table["quality"].mean()),
        "base_all_attributes_rate": float((table["fidelity"] == 1.0).mean()),
        "winner_mean_utility": winners,
        "gap_to_winners": winners - float(u.mean()),
        "samples": int(len(table)),
        "sampling": {**s.model_dump(), "seeds": cfg.seeds, "prompts": int(len(prompts))},
        "check_rates": {c[3:]: float(table[c].dropna().astype(float).mean()) for c in table.columns if c.startswith("ok_")},
    }
    write_json(metrics_path, metrics)
    return metrics
