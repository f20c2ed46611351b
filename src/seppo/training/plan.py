"""Which winners a round trains on, its noise and its reference samples (pure, shared by stages).

Where a round's files live: seppo.layout (Layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..seeding import seed63 as _seed


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


def resolve_frame_corr(base_dir: Path) -> float:
    """The frame noise correlation of a video theta_0 (models.recipe), 0 for images and released adapters."""
    from ..models.recipe import recipe_frame_correlation

    return recipe_frame_correlation(base_dir)


def draw_noise(g, n: int, shape, T: int, noise_offset: float = 0.0, frame_corr: float = 0.0):
    """n (noise, t) draws from generator ``g``. With ``noise_offset`` > 0 each sample's noise gets a
    per-channel constant (offset noise), as the embedded base model was pretrained: fine-tuning with
    another noise distribution than pretraining would confound every comparison. With ``frame_corr`` > 0
    (clips (C, F, h, w)) the frames share a noise component, as the embedded motion adapter was pretrained."""
    import torch

    from ..models.recipe import frame_correlated

    noise = torch.randn((n, *shape), generator=g)
    t = torch.randint(0, T, (n,), generator=g)
    if noise_offset > 0:  # drawn last, so offset 0 leaves the historical draws unchanged
        noise = noise + noise_offset * torch.randn((n, shape[0], *([1] * (len(shape) - 1))), generator=g)
    if frame_corr > 0 and len(shape) != 4:
        raise ValueError(f"frame_corr={frame_corr} needs clip latents (C, F, h, w), got {tuple(shape)}")
    return frame_correlated(noise, frame_corr, g), t


def round_noise(seed: int, round_k: int, update: int, micro: int, global_mb: int, shape, T: int,
                noise_offset: float = 0.0, frame_corr: float = 0.0):
    """(noise, t) of one global micro-batch: the same draw whatever the number of processes."""
    import torch

    g = torch.Generator().manual_seed(noise_seed(seed, round_k, update, micro))
    return draw_noise(g, global_mb, shape, T, noise_offset, frame_corr)


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
