"""Choosing round k's reference checkpoint from the bank {theta_0, ..., theta_{k-1}} (pure)."""

from __future__ import annotations

import numpy as np

from ..seeding import named_rng

STRATEGIES = ("uniform", "first", "latest")


def selection_rng(seed: int, round_k: int) -> np.random.Generator:
    """The one generator a round's selection uses: recorded as (seed, round)."""
    return named_rng("select", seed, round_k)


def select_reference(bank: list[str], strategy: str, rng: np.random.Generator) -> int:
    """Index into ``bank`` (ordered theta_0 .. theta_{k-1}) of the reference for this round.

    ``uniform`` (SePPO): j uniform in {0..k-1}; ``first``: theta_0 (fixed-reference DPO);
    ``latest``: theta_{k-1} (SPIN-Diffusion).
    """
    if not bank:
        raise ValueError("the checkpoint bank is empty: it must hold at least theta_0")
    if strategy == "uniform":
        return int(rng.integers(len(bank)))
    if strategy == "first":
        return 0
    if strategy == "latest":
        return len(bank) - 1
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
