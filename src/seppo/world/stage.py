"""The ``world`` stage: Shapeland's preference shards, prompts, web corpus and utility check."""

from __future__ import annotations


import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import WorldConfig
from ..io_utils import atomic_dir, atomic_path, write_json
from ..layout import timing_path
from .generators import Annotator, skill_generator
from .pickapic import make_pairs, write_shards
from .prompts import feasible_scenes, split_prompts
from .render import decode_image
from .utility import utility
from .utility_check import check_utility
from .web_corpus import make_web_corpus


def run_world(cfg: WorldConfig, out: Path, metrics_path: Path) -> dict:
    """Write everything under ``out``; return (and write) the world's metrics."""
    t0 = time.perf_counter()
    # Independent streams per product, so changing one size does not reshuffle the others.
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    rng_pairs, rng_web, rng_check, _ = (np.random.default_rng(s) for s in seeds)
    eval_scenes, train_scenes = split_prompts(
        cfg.image_size, cfg.eval_prompts, cfg.train_prompts, cfg.seed
    )
    prompts = pd.DataFrame(
        {
            "prompt_id": [f"eval-{i:04d}" for i in range(len(eval_scenes))]
            + [f"train-{i:04d}" for i in range(len(train_scenes))],
            "caption": [s.caption() for s in eval_scenes + train_scenes],
            "split": ["eval"] * len(eval_scenes) + ["train"] * len(train_scenes),
        }
    )
    with atomic_path(out / "prompts.parquet") as tmp:
        prompts.to_parquet(tmp, index=False)

    annotator = Annotator(cfg.annotator_temperature, cfg.tie_margin, cfg.tie_prob)
    rows, truth = make_pairs(
        train_scenes, cfg.pairs_per_prompt, cfg.image_size, annotator, cfg.identical_pair_rate,
        rng_pairs, tuple(skill_generator(s) for s in cfg.pair_generator_skills),
    )
    write_shards(rows, out / "pickapic", cfg.shard_rows)
    with atomic_path(out / "pairs_truth.parquet") as tmp:
        pd.DataFrame(truth).to_parquet(tmp, index=False)

    images, web = make_web_corpus(
        cfg.web_size, list(feasible_scenes(cfg.image_size)), cfg.image_size,
        cfg.web_partial_caption_rate, cfg.web_wrong_caption_rate, rng_web,
    )
    with atomic_dir(out / "web") as tmp:
        np.save(tmp / "images.npy", images)
        web.to_parquet(tmp / "captions.parquet", index=False)

    metrics = {
        "pairs": pair_metrics(rows),
        "prompts": {"eval": len(eval_scenes), "train": len(train_scenes)},
        "web": {"images": int(len(web)), **web["kind"].value_counts().sort_index().to_dict()},
        "utility_check": check_utility(
            list(feasible_scenes(cfg.image_size)), cfg.utility_check_renders, cfg.image_size,
            rng_check,
        ),
        "web_mean_utility_exact_captions": _web_utility(images, web),
    }
    write_json(metrics_path, metrics)
    # wall-clock figures only where nothing depends on them (the report reads world.json)
    write_json(timing_path(metrics_path), {"seconds": round(time.perf_counter() - t0, 1)})
    return metrics


def pair_metrics(rows: list[dict]) -> dict:
    """Counts and the pixel utility of winners and losers (ties excluded)."""
    u_win, u_lose = [], []
    ties = 0
    for r in rows:
        if r["label_0"] == r["label_1"]:
            ties += 1
            continue
        win, lose = ("jpg_0", "jpg_1") if r["label_0"] == 1.0 else ("jpg_1", "jpg_0")
        u_win.append(utility(decode_image(r[win]), r["caption"]).utility)
        u_lose.append(utility(decode_image(r[lose]), r["caption"]).utility)
    u_win_a, u_lose_a = np.array(u_win), np.array(u_lose)
    return {
        "rows": len(rows),
        "ties": ties,
        "winner_mean_utility": float(u_win_a.mean()),
        "loser_mean_utility": float(u_lose_a.mean()),
        "winner_beats_loser_rate": float(np.mean(u_win_a > u_lose_a)),
    }


def _web_utility(images: np.ndarray, web: pd.DataFrame) -> float:
    exact = np.flatnonzero(web["kind"].to_numpy() == "exact")[:1000]
    return float(np.mean([utility(images[i], web["scene"].iloc[i]).utility for i in exact]))


