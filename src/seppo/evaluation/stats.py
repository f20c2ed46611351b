"""Uncertainty for evaluation numbers: bootstrap means and paired win rates (pure numpy).

Resampling is over PROMPTS (all seeds of a prompt move together), because prompts, not seeds,
are the population the claim is about.
"""

from __future__ import annotations

import numpy as np


def bootstrap_mean(values_by_prompt: np.ndarray, n_boot: int, seed: int, level: float = 0.95):
    """(mean, lo, hi) of the mean over prompts of per-prompt means; input shape (prompts, seeds)."""
    v = np.asarray(values_by_prompt, dtype=float).reshape(len(values_by_prompt), -1)
    per_prompt = v.mean(1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_prompt), (n_boot, len(per_prompt)))
    boots = per_prompt[idx].mean(1)
    a = (1 - level) / 2
    return float(per_prompt.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def paired_win_rate(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float = 0.95):
    """Share of (prompt, seed) pairs where a beats b (ties count half), with a prompt bootstrap CI."""
    a = np.asarray(a, dtype=float).reshape(len(a), -1)
    b = np.asarray(b, dtype=float).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"paired win rate needs the same prompts and seeds: {a.shape} vs {b.shape}")
    wins = (a > b) + 0.5 * (a == b)
    per_prompt = wins.mean(1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_prompt), (n_boot, len(per_prompt)))
    boots = per_prompt[idx].mean(1)
    q = (1 - level) / 2
    return float(per_prompt.mean()), float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))
