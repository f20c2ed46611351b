"""Choosing round k's reference checkpoint from the bank {theta_0, ..., theta_{k-1}}.

Numpy only: the `select` stage imports nothing heavier (a torch/diffusers import costs ~10 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io_utils import write_json
from ..seeding import named_rng

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..layout import Layout

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


def run_select(cfg: TrainConfig, k: int, layout: Layout) -> dict:
    bank = [str(p) for p in layout.bank(k)]
    missing = [b for b in bank if not (Path(b) / "model_index.json").exists()]
    if missing:
        raise FileNotFoundError(f"round {k}: bank checkpoints missing: {missing} (run the earlier rounds)")
    if cfg.loss == "seppo":
        strategy = cfg.strategy
    else:  # the baselines' reference: theta_0 for dpo (Diffusion-DPO), none needed for sft
        strategy = "first"
    j = select_reference(bank, strategy, selection_rng(cfg.seed, k))
    record = {"round": k, "loss": cfg.loss, "strategy": strategy, "seed": cfg.seed,
              "rng": f"selection_rng(seed={cfg.seed}, round={k})", "bank": bank, "index": j,
              "reference": bank[j]}
    write_json(layout.selection(k), record)
    return record
