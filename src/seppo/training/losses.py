"""Preference losses for epsilon-prediction diffusion models: pure functions on per-sample errors.

Conventions (stated once, used everywhere; see docs/seppo.md, pitfall 1):
- A per-sample error is the MEAN over channels and pixels of (eps - eps_hat)^2, as in the
  Diffusion-DPO code (not the sum).
- ``beta`` is the paper's beta (2000 for SD1.5, 5000 for SDXL); the logit uses b = 0.5 * beta.
- D_w = e_pol^w - e_ref^w and D_r = e_pol^r - e_ref^r; negative means the policy beats the reference.

SePPO:    L = -log sigmoid(-b * (D_w - s * D_r)),  s = sign(e_ref^w - e_pol^w) (no gradient)
DPO:      L = -log sigmoid(-b * (D_w - D_l))       (the real loser in place of the reference sample)
SFT:      L = e_pol^w                               (plain denoising loss on the winners)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CRITERIA = ("sign", "indicator", "none")


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all but the batch dimension, in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def anchor_sign(e_pol_w: torch.Tensor, e_ref_w: torch.Tensor, criterion: str, tie_tol: float) -> torch.Tensor:
    """s per sample: +1 learn the reference sample as a loser, -1 as a second winner, 0 drop it.

    ``sign``: s = sign(e_ref^w - e_pol^w); |difference| <= tie_tol gives 0 (e.g. policy == reference).
    ``indicator``: s = 1 where the policy fits the winner better, else 0 (never flips).
    ``none``: s = 1 always (the reference sample is always the loser).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    diff = (e_ref_w - e_pol_w).detach()
    if criterion == "none":
        return torch.ones_like(diff)
    s = torch.sign(diff) * (diff.abs() > tie_tol)
    if criterion == "indicator":
        s = (s > 0).to(diff.dtype)
    return s


@dataclass
class LossStats:
    """Diagnostics of one loss evaluation (floats, batch means)."""

    flip_rate: float  # share of s = -1: reference sample learned as a second winner
    tie_rate: float  # share of s = 0
    implicit_acc: float  # share of samples whose logit is > 0 (the pair is "ranked right")
    d_w: float
    d_r: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, *, beta: float, criterion: str = "sign",
               tie_tol: float = 0.0) -> tuple[torch.Tensor, LossStats]:
    """SePPO with the anchor criterion; every argument is a (B,) per-sample error."""
    s = anchor_sign(e_pol_w, e_ref_w, criterion, tie_tol)
    d_w, d_r = e_pol_w - e_ref_w, e_pol_r - e_ref_r
    logits = -0.5 * beta * (d_w - s * d_r)
    loss = -F.logsigmoid(logits).mean()
    stats = LossStats(
        flip_rate=float((s < 0).float().mean()),
        tie_rate=float((s == 0).float().mean()),
        implicit_acc=float((logits > 0).float().mean()),
        d_w=float(d_w.detach().mean()),
        d_r=float(d_r.detach().mean()),
    )
    return loss, stats


def dpo_loss(e_pol_w, e_ref_w, e_pol_l, e_ref_l, *, beta: float) -> tuple[torch.Tensor, LossStats]:
    """Diffusion-DPO on real winner/loser pairs: SePPO's `none` criterion with the real loser."""
    return seppo_loss(e_pol_w, e_ref_w, e_pol_l, e_ref_l, beta=beta, criterion="none")


def sft_loss(e_pol_w: torch.Tensor) -> tuple[torch.Tensor, LossStats]:
    """Supervised fine-tuning on the winners only."""
    nan = float("nan")
    return e_pol_w.mean(), LossStats(flip_rate=nan, tie_rate=nan, implicit_acc=nan, d_w=nan, d_r=nan)
