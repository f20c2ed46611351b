"""Where each round's files live, and which winners a round trains on (pure, shared by stages).

  theta_0            models/base/                       (the base_model stage)
  theta_k            models/round_k/                    (a StableDiffusionPipeline folder)
  video (an arm)     models/video_base/, models/video_[<arm>_]round_k/ (AnimateDiffPipeline folders), and
                     the same files below with the prefix video_ / video_<arm>_ (Layout.prefix)
  selection          runs/round_k/reference.json
  reference samples  data/refsamples/round_k/
  training logs      runs/round_k/live/                 (DVCLive)
  wall-clock figures reports/metrics/timing/{round_k,refsamples_k}.json (nothing depends on them)
  resumable state    runs/state/round_k/                (not DVC-tracked; removed when the round ends)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Params, TrainConfig
from ..seeding import seed63 as _seed


@dataclass(frozen=True)
class Layout:
    """Paths of one chain of rounds. The image pipeline uses the defaults; a video arm a prefix
    (``video_`` for SePPO, ``video_sft_`` for a baseline) and its own theta_0 (models/video_base)."""

    root: Path = Path(".")
    prefix: str = ""
    base: str = "models/base"

    def checkpoint(self, k: int) -> Path:
        return self.root / (self.base if k == 0 else f"models/{self.prefix}round_{k}")

    def bank(self, k: int) -> list[Path]:
        """The bank available to round k: theta_0 .. theta_{k-1}."""
        return [self.checkpoint(j) for j in range(k)]

    def selection(self, k: int) -> Path:
        return self.root / f"runs/{self.prefix}round_{k}/reference.json"

    def refsamples(self, k: int) -> Path:
        return self.root / f"data/{self.prefix}refsamples/round_{k}"

    def live(self, k: int) -> Path:
        return self.root / f"runs/{self.prefix}round_{k}/live"

    def positions(self, k: int) -> Path:
        """Round k's per-position anchor records (trainer._write_positions)."""
        return self.root / f"runs/{self.prefix}round_{k}/positions.parquet"

    def state(self, k: int) -> Path:
        return self.root / f"runs/state/{self.prefix}round_{k}"

    def metrics(self, k: int) -> Path:
        return self.root / f"reports/metrics/{self.prefix}round_{k}.json"

    def refsamples_timing(self, k: int) -> Path:
        """Wall-clock figures of round k's reference samples: nothing depends on this file."""
        return self.root / f"reports/metrics/timing/{self.prefix}refsamples_{k}.json"

    def timing(self, k: int) -> Path:
        """Wall-clock figures of round k's training: nothing depends on this file (io_utils.timing_path)."""
        return self.root / f"reports/metrics/timing/{self.prefix}round_{k}.json"


def video_layout(arm: str, root: Path = Path(".")) -> Layout:
    """The video chain of ``arm`` (video.arms): seppo -> models/video_round_k, sft -> models/video_sft_round_k."""
    return Layout(root, "video_" if arm == "seppo" else f"video_{arm}_", VIDEO_BASE)


VIDEO_BASE = "models/video_base"


def video_train_config(params: Params) -> TrainConfig:
    """What the video rounds train with: the train section with video.train_overrides applied (rounds per arm =
    train.rounds unless overridden)."""
    return TrainConfig(**{**params.train.model_dump(), **params.video.train_overrides})


def samples_per_round(updates: int, micro_batch: int, grad_accum: int, processes: int = 1) -> int:
    return updates * micro_batch * grad_accum * processes


def round_rows(n_rows: int, round_k: int, per_round: int, seed: int) -> np.ndarray:
    """Winner rows of round k: slice [(k-1)N, kN) of an endless stream of seeded permutations.

    Deterministic in (n_rows, k, N, seed), so the reference-sample stage and the training stage
    agree on the rows without talking to each other, and a resumed run sees the same data.
    """
    if n_rows < 1:
        raise ValueError("no winners to train on")
    start, stop = (round_k - 1) * per_round, round_k * per_round
    out = []
    for epoch in range(start // n_rows, (stop - 1) // n_rows + 1):
        perm = np.random.default_rng(_seed("order", seed, epoch)).permutation(n_rows)
        lo, hi = max(start - epoch * n_rows, 0), min(stop - epoch * n_rows, n_rows)
        out.append(perm[lo:hi])
    return np.concatenate(out)


def resolve_noise_offset(cfg, base_dir: Path) -> float:
    """train.noise_offset, with ``auto`` = the base model's pretraining recipe (0 without a record)."""
    from ..models.recipe import recipe_noise_offset

    if cfg.noise_offset != "auto":
        return float(cfg.noise_offset)
    return recipe_noise_offset(base_dir)


def noise_seed(seed: int, round_k: int, update: int, micro: int) -> int:
    """Seed of the noise and timesteps of one micro-batch (global, so process layout does not matter)."""
    return _seed("noise", seed, round_k, update, micro)


def draw_noise(g, n: int, shape, T: int, noise_offset: float = 0.0):
    """n (noise, t) draws from generator ``g``. With ``noise_offset`` > 0 each sample's noise gets a
    per-channel constant (offset noise), as the embedded base model was pretrained: fine-tuning with
    another noise distribution than pretraining would confound every comparison."""
    import torch

    noise = torch.randn((n, *shape), generator=g)
    t = torch.randint(0, T, (n,), generator=g)
    if noise_offset > 0:  # drawn last, so offset 0 leaves the historical draws unchanged
        noise = noise + noise_offset * torch.randn((n, shape[0], *([1] * (len(shape) - 1))), generator=g)
    return noise, t


def round_noise(seed: int, round_k: int, update: int, micro: int, global_mb: int, shape, T: int,
                noise_offset: float = 0.0):
    """(noise, t) of one global micro-batch: the same draw whatever the number of processes."""
    import torch

    g = torch.Generator().manual_seed(noise_seed(seed, round_k, update, micro))
    return draw_noise(g, global_mb, shape, T, noise_offset)


def ref_sample_keys(captions: list[str], uids: list[str], mode: str, per_prompt: int, round_k: int,
                    seed: int) -> tuple[list[int], list[str], list[int]]:
    """Which reference sample each position of a round uses.

    Returns (sample index per position, prompt per sample, seed per sample). ``per_winner``: one
    sample per position (a fresh sample per winner occurrence). ``per_prompt``: ``per_prompt``
    samples per unique caption; a caption's i-th occurrence uses sample i mod per_prompt.
    """
    if mode == "per_winner":
        seeds = [_seed("ref", seed, round_k, pos, uid) for pos, uid in enumerate(uids)]
        return list(range(len(uids))), list(captions), seeds
    if mode != "per_prompt":
        raise ValueError(f"unknown ref_samples mode {mode!r}")
    first: dict[str, int] = {}
    prompts, seeds, index, seen = [], [], [], {}
    for cap in captions:
        if cap not in first:
            first[cap] = len(prompts)
            for j in range(per_prompt):
                prompts.append(cap)
                seeds.append(_seed("ref", seed, round_k, cap, j))
        occ = seen.get(cap, 0)
        seen[cap] = occ + 1
        index.append(first[cap] + occ % per_prompt)
    return index, prompts, seeds
