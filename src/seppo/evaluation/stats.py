"""Uncertainty for evaluation numbers: bootstrap means and paired win rates; the AUC of a statistic against a
label with its bootstrap interval (pure numpy / scipy).

Resampling is over PROMPTS (all seeds of a prompt move together), because prompts, not seeds,
are the population the claim is about.
"""

from __future__ import annotations

import numpy as np


def _by_prompt(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v.reshape(len(v), -1)


def _bootstrap(per_prompt: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile interval of the mean of per-prompt values."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_prompt), (n_boot, len(per_prompt)))
    boots = per_prompt[idx].mean(1)
    q = (1 - level) / 2
    return float(per_prompt.mean()), float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))


def bootstrap_mean(values_by_prompt, n_boot: int, seed: int, level: float = 0.95):
    """(mean, lo, hi) of the mean over prompts of per-prompt means; input shape (prompts, seeds)."""
    return _bootstrap(_by_prompt(values_by_prompt).mean(1), n_boot, seed, level)


def paired_win_rate(a, b, n_boot: int, seed: int, level: float = 0.95):
    """Share of (prompt, seed) pairs where a beats b (ties count half), with a prompt bootstrap CI."""
    a, b = _by_prompt(a), _by_prompt(b)
    if a.shape != b.shape:
        raise ValueError(f"paired win rate needs the same prompts and seeds: {a.shape} vs {b.shape}")
    wins = (a > b) + 0.5 * (a == b)
    return _bootstrap(wins.mean(1), n_boot, seed, level)


def auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U)."""
    from scipy.stats import rankdata

    label = label.astype(bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_ci(score: np.ndarray, label: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the AUC over positions resampled with replacement (seeded: the same
    records give the same interval)."""
    label = label.astype(bool)
    if label.all() or not label.any():
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        i = rng.integers(0, len(label), len(label))
        a = auc(score[i], label[i])
        if a is not None:
            vals.append(a)
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [float(lo), float(hi)]
