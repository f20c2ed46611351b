"""Preference losses for epsilon-prediction diffusion models: pure functions on per-sample errors.

Conventions (stated once, used everywhere; see docs/seppo.md, "Errors and beta"):
- A per-sample error is the MEAN over channels and pixels of (eps - eps_hat)^2, as in the
  Diffusion-DPO code (not the sum).
- ``beta`` is the paper's beta (2000 for SD1.5, 5000 for SDXL); the logit uses b = 0.5 * beta.
- D_w = e_pol^w - e_ref^w and D_r = e_pol^r - e_ref^r; negative means the policy beats the reference.

SePPO:    L = -log sigmoid(-b * (D_w - s * D_r)),  s = sign(e_ref^w - e_pol^w) (no gradient)
          (or a robust anchor: averaged over K draws, with a margin in standard errors, or soft;
          or a criterion that reads the reference sample itself: the ground truth (oracle), a
          preference scorer (reward), the policy's implicit DPO reward (implicit))
DPO:      L = -log sigmoid(-b * (D_w - D_l))       (the real loser in place of the reference sample)
SFT:      L = e_pol^w                               (plain denoising loss on the winners)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CRITERIA = ("sign", "indicator", "none", "soft", "oracle", "oracle_drop", "reward", "implicit")
# criteria whose s is decided per position from scores of the winner and its reference sample made in the
# refsamples stage (the ground-truth utility, a preference scorer), not from the UNets' errors
SCORED_CRITERIA = ("oracle", "oracle_drop", "reward")
FALLBACKS = ("loser", "drop")


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all but the batch dimension, in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


@dataclass(frozen=True)
class AnchorConfig:
    """How the anchor test turns the evidence on the winner into s (see ``anchor_decision``)."""

    criterion: str
    tie_tol: float = 0.0
    margin_z: float = 0.0  # decide only when |mean gap| > margin_z * SE (needs >= 2 draws)
    fallback: str = "loser"  # s where the margin is not met: loser (+1) or drop (0)
    soft_c: float = 1.0  # soft: s = tanh(mean gap / (soft_c * SE))
    flip_margin: float = 0.0  # oracle / reward: flip only where the reference sample wins by more (score units)

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"anchor fallback must be one of {FALLBACKS}, got {self.fallback!r}")


@dataclass(frozen=True)
class AnchorEvidence:
    """The criterion's statistic per position, oriented so that > 0 means "learn the reference sample as a loser"
    and < 0 "it is the better image: flip it":

    - the anchor (sign, indicator, soft): gap = e_ref^w - e_pol^w (> 0: the policy fits the winner better);
    - implicit: gap = D_r - D_w = r(x_w) - r(x_r), r(x) = -(e_pol(x) - e_ref(x)) the DPO implicit reward;
    - oracle / reward: gap = score(winner) - score(reference sample) (utility, or the scorer's own units).

    ``mean`` over the statistic's draws and its standard error ``se`` (None for a single draw or a score)."""

    mean: torch.Tensor
    se: torch.Tensor | None = None


def anchor_from_draws(gaps: torch.Tensor) -> AnchorEvidence:
    """Evidence from K >= 2 independent draws per winner: gaps (B, K) -> mean and SE = sd / sqrt(K)."""
    if gaps.ndim != 2 or gaps.shape[1] < 2:
        raise ValueError(f"need (B, K >= 2) gaps for a standard error, got shape {tuple(gaps.shape)}")
    k = gaps.shape[1]
    return AnchorEvidence(gaps.mean(1), gaps.std(1, unbiased=True) / k**0.5)


def anchor_decision(evidence: AnchorEvidence, anchor: AnchorConfig) -> torch.Tensor:
    """s per sample: +1 learn the reference sample as a loser, -1 as a second winner, 0 drop it
    (fractional for ``soft``).

    ``sign`` (the paper): s = sign(gap); |gap| <= tie_tol gives 0 (e.g. policy == reference).
    ``indicator``: s = 1 where the policy fits the winner better, else 0 (never flips).
    ``none``: s = 1 always (the reference sample is always the loser: the paper's "w/o AAF").
    ``soft``: s = tanh(gap / (soft_c * SE)): confident gaps give +-1, gaps within the noise ~0.
    With ``margin_z`` > 0, sign and indicator decide only where |gap| > margin_z * SE and use
    ``fallback`` elsewhere.
    ``oracle`` / ``reward``: s = -1 where the reference sample's score beats the winner's by more than
    ``flip_margin`` (gap < -flip_margin), else +1; ``oracle_drop``: 0 instead of -1 (loser or skipped).
    ``implicit``: s = -1 where r(x_r) > r(x_w), +1 where r(x_w) > r(x_r) (beyond tie_tol, and beyond
    margin_z * SE when there is a margin); ``fallback`` where undecided (e.g. round 1: policy == reference).
    """
    gap = evidence.mean.detach()
    if anchor.criterion == "none":
        return torch.ones_like(gap)
    if anchor.criterion in SCORED_CRITERIA:
        flip = gap < -anchor.flip_margin
        return torch.where(flip, torch.full_like(gap, 0.0 if anchor.criterion == "oracle_drop" else -1.0),
                           torch.ones_like(gap))
    se = None if evidence.se is None else evidence.se.detach().to(gap.dtype)
    if anchor.criterion == "soft":
        if se is None:
            raise ValueError("the soft anchor needs a standard error: set train.anchor_draws >= 2")
        exact = torch.sign(gap) * (gap.abs() > anchor.tie_tol)  # identical nets: SE = 0
        return torch.where(se > 0, torch.tanh(gap / (anchor.soft_c * se.clamp_min(1e-30))), exact)
    s = torch.sign(gap) * (gap.abs() > anchor.tie_tol)
    if anchor.criterion == "indicator":
        s = (s > 0).to(gap.dtype)
    if anchor.criterion == "implicit":
        fallback = torch.full_like(s, 1.0 if anchor.fallback == "loser" else 0.0)
        decided = s != 0
        if anchor.margin_z > 0:
            if se is None:
                raise ValueError("an implicit-reward margin needs a standard error: set train.anchor_draws >= 2")
            decided = decided & (gap.abs() > anchor.margin_z * se)
        return torch.where(decided, s, fallback)
    if anchor.margin_z > 0:
        if se is None:
            raise ValueError("an anchor margin needs a standard error: set train.anchor_draws >= 2")
        fallback = 1.0 if anchor.fallback == "loser" else 0.0
        s = torch.where(gap.abs() > anchor.margin_z * se, s, torch.full_like(s, fallback))
    return s


def anchor_sign(e_pol_w: torch.Tensor, e_ref_w: torch.Tensor, criterion: str, tie_tol: float) -> torch.Tensor:
    """The paper's single-draw anchor on the loss's own draw (no margin, no averaging)."""
    return anchor_decision(AnchorEvidence(e_ref_w - e_pol_w), AnchorConfig(criterion, tie_tol))


@dataclass
class LossStats:
    """Diagnostics of one loss evaluation (floats, batch means) and detached per-sample values."""

    flip_rate: float  # share of s < 0: reference sample learned as a second winner
    tie_rate: float  # share of s = 0
    implicit_acc: float  # share of samples whose logit is > 0 (the pair is "ranked right")
    d_w: float
    d_r: float
    per_sample: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "per_sample"}


def seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, *, beta: float, criterion: str | None = None,
               tie_tol: float = 0.0, anchor: AnchorConfig | None = None,
               evidence: AnchorEvidence | None = None) -> tuple[torch.Tensor, LossStats]:
    """SePPO with the anchor criterion; every error is a (B,) per-sample error.

    ``anchor`` (default: ``criterion`` and ``tie_tol``) decides s from ``evidence``; without
    evidence the anchor is the paper's: the gap on the loss's own (eps, t) draw."""
    if anchor is None and criterion is None:
        raise TypeError("seppo_loss needs criterion= or anchor= (train.criterion; no default here)")
    anchor = anchor or AnchorConfig(criterion, tie_tol)
    loss_gap = (e_ref_w - e_pol_w).detach()
    d_w, d_r = e_pol_w - e_ref_w, e_pol_r - e_ref_r
    if evidence is None:
        if anchor.criterion in SCORED_CRITERIA:
            raise ValueError(f"criterion {anchor.criterion!r} decides from per-position scores of the winner and "
                             "its reference sample: pass them as evidence (the refsamples stage writes them)")
        # the loss's own (eps, t) draw: the paper's anchor gap, or the implicit-reward gap D_r - D_w
        evidence = AnchorEvidence((d_r - d_w).detach() if anchor.criterion == "implicit" else loss_gap)
    s = anchor_decision(evidence, anchor)
    logits = -0.5 * beta * (d_w - s * d_r)
    loss = -F.logsigmoid(logits).mean()
    per = {"s": s, "gap": loss_gap.float(), "anchor_gap": evidence.mean.detach().float(),
           "d_w": d_w.detach().float(), "d_r": d_r.detach().float(),
           "e_pol_w": e_pol_w.detach().float(), "e_ref_w": e_ref_w.detach().float(),
           "logit": logits.detach().float()}
    if evidence.se is not None:
        per["anchor_se"] = evidence.se.detach().float()
    stats = LossStats(
        flip_rate=float((s < 0).float().mean()),
        tie_rate=float((s == 0).float().mean()),
        implicit_acc=float((logits > 0).float().mean()),
        d_w=float(d_w.detach().mean()),
        d_r=float(d_r.detach().mean()),
        per_sample=per,
    )
    return loss, stats


def dpo_loss(e_pol_w, e_ref_w, e_pol_l, e_ref_l, *, beta: float) -> tuple[torch.Tensor, LossStats]:
    """Diffusion-DPO on real winner/loser pairs: SePPO's `none` criterion with the real loser."""
    return seppo_loss(e_pol_w, e_ref_w, e_pol_l, e_ref_l, beta=beta, criterion="none")


def sft_loss(e_pol_w: torch.Tensor) -> tuple[torch.Tensor, LossStats]:
    """Supervised fine-tuning on the winners only."""
    nan = float("nan")
    return e_pol_w.mean(), LossStats(flip_rate=nan, tie_rate=nan, implicit_acc=nan, d_w=nan, d_r=nan)
