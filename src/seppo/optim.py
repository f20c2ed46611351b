"""AdamW by implementation name, for the stages that pretrain the embedded models (theta_0, PickScore)."""

from __future__ import annotations

from typing import Iterable


def adamw(params: Iterable, lr: float, weight_decay: float, impl: str):
    """torch.optim.AdamW with ``impl`` 'fused', 'foreach' or 'for-loop' (config.AdamWImpl).

    Naming the implementation instead of leaving torch to choose keeps a model's bits a function of the
    params: torch's default differs by device and version (for-loop on CPU, foreach on CUDA)."""
    import torch

    kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    if impl not in kinds:
        raise ValueError(f"adamw_impl: expected one of {sorted(kinds)} (got {impl!r})")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kinds[impl])
