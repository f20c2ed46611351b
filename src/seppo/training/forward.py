"""The UNet forwards of a training step and their per-sample errors (shared by training and by the
refsamples stage, which precomputes the reference's errors with exactly these functions).

One micro-batch is a ``MicroBatch``: winner latents, the paired second latents (reference samples
or real losers), text conditioning, ONE (noise, t) draw shared by both halves (docs/seppo.md,
"Errors and beta") and, for anchors averaged over several draws, K further (noise, t) draws per winner that
the loss never sees. The regression target follows the scheduler's ``prediction_type``: the noise
for epsilon models, the velocity for v-prediction models; anything else is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..config import TrainConfig
from ..models.conditioning import TextCond, as_cond
from .losses import (SCORED_CRITERIA, AnchorConfig, AnchorEvidence, LossStats, anchor_from_draws, dpo_loss,
                     per_sample_error, seppo_loss, sft_loss)

PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(scheduler, where: str) -> str:
    """The scheduler's prediction type, or a ValueError naming the folder and the supported types."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"{where}: scheduler prediction_type {kind!r} is not supported; training supports "
                         f"{' and '.join(PREDICTION_TYPES)} (the target is taken from the scheduler)")
    return kind


def resolve_mixed_precision(setting: str) -> str:
    if setting == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if setting in ("fp16",) and not torch.cuda.is_available():
        raise ValueError("train.mixed_precision=fp16 needs a CUDA device; use 'no' or 'auto' on CPU")
    return setting


def autocast(mixed_precision: str, device: torch.device):
    """The autocast context training runs its forwards in (accelerate's, for the same setting)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def training_target(scheduler, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses at x_t = add_noise(z, noise, t): noise (epsilon) or velocity (v)."""
    kind = check_prediction_type(scheduler, "training scheduler")
    if kind == "epsilon":
        return noise
    return scheduler.get_velocity(z, noise, t)


@dataclass
class MicroBatch:
    """The tensors of one micro-batch on one process (B winners)."""

    z_w: torch.Tensor
    z_r: torch.Tensor | None
    cond: TextCond
    noise: torch.Tensor
    t: torch.Tensor
    e_ref: tuple[torch.Tensor, torch.Tensor] | None = None  # precomputed (e_ref^w, e_ref^r)
    anchor_noise: torch.Tensor | None = None  # (B, K, C, h, w): the anchor's own draws
    anchor_t: torch.Tensor | None = None  # (B, K)
    e_ref_anchor: torch.Tensor | None = None  # precomputed reference errors on the anchor draws (B, K)
    preference_gap: torch.Tensor | None = None  # oracle / reward: score(winner) - score(reference sample) (B,)

    def to(self, device) -> "MicroBatch":
        def move(x):
            if x is None:
                return None
            if isinstance(x, tuple):
                return tuple(v.to(device) for v in x)
            return x.to(device)

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})


def fused_batch(scheduler, z_w, z_r, cond, noise, t):
    """The 2B batch both UNets see: winner half, second half, the same (noise, t); and its target."""
    cond = as_cond(cond)
    x = torch.cat([scheduler.add_noise(z_w, noise, t), scheduler.add_noise(z_r, noise, t)])
    target = torch.cat([training_target(scheduler, z_w, noise, t), training_target(scheduler, z_r, noise, t)])
    return x, torch.cat([t, t]), cond.twice(), target


def _errors(net, x, t, cond: TextCond, target) -> torch.Tensor:
    # The reference runs in the policy's dtype under the same autocast: identical weights must give
    # identical errors (s = 0), whatever the mixed-precision setting.
    dtype = next(net.parameters()).dtype
    if x.ndim == 5:  # video latents (B, C, F, h, w): a motion UNet takes the text once per frame
        cond = cond._map(lambda v: v.repeat_interleave(x.shape[2], 0))
    # per-sample errors average over every non-batch axis: channels, frames and pixels
    return per_sample_error(net(x.to(dtype), t, **cond.to(dtype).unet_kwargs()).sample, target)


def reference_errors(reference, scheduler, z_w, z_r, cond, noise, t):
    """(e_ref^w, e_ref^r): the reference UNet's fused 2B forward, no gradient."""
    x, tt, cc, target = fused_batch(scheduler, z_w, z_r, cond, noise, t)
    with torch.no_grad():
        return _errors(reference, x, tt, cc, target).chunk(2)


def anchor_errors(net, scheduler, z_w, cond, anchor_noise, anchor_t) -> torch.Tensor:
    """Errors (B, K) of ``net`` on each winner under its K anchor draws, no gradient, one forward."""
    b, k = anchor_t.shape
    cond = as_cond(cond)
    z = z_w.repeat_interleave(k, 0)
    noise = anchor_noise.reshape(b * k, *anchor_noise.shape[2:])
    t = anchor_t.reshape(-1)
    cc = cond._map(lambda x: x.repeat_interleave(k, 0))
    with torch.no_grad():
        e = _errors(net, scheduler.add_noise(z, noise, t), t, cc, training_target(scheduler, z, noise, t))
    return e.reshape(b, k)


def compute_loss(cfg: TrainConfig, policy, reference, scheduler, batch: MicroBatch) -> tuple[torch.Tensor, LossStats]:
    """One micro-batch: fused 2B forwards with shared (noise, t), the anchor, the loss.

    The reference UNet runs here unless ``batch.e_ref`` (and, for a multi-draw anchor,
    ``batch.e_ref_anchor``) were precomputed by the refsamples stage."""
    if cfg.loss == "sft":
        cond = as_cond(batch.cond)
        x = scheduler.add_noise(batch.z_w, batch.noise, batch.t)
        e_pol_w = _errors(policy, x, batch.t, cond, training_target(scheduler, batch.z_w, batch.noise, batch.t))
        return sft_loss(e_pol_w)
    x, tt, cc, target = fused_batch(scheduler, batch.z_w, batch.z_r, batch.cond, batch.noise, batch.t)
    e_pol_w, e_pol_r = _errors(policy, x, tt, cc, target).chunk(2)
    if batch.e_ref is not None:
        e_ref_w, e_ref_r = batch.e_ref
    else:
        with torch.no_grad():
            e_ref_w, e_ref_r = _errors(reference, x, tt, cc, target).chunk(2)
    if cfg.loss == "dpo":
        return dpo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=cfg.beta)
    evidence = None
    if cfg.criterion in SCORED_CRITERIA:
        if batch.preference_gap is None:
            raise ValueError(f"train.criterion={cfg.criterion} needs the refsamples stage's per-position scores")
        evidence = AnchorEvidence(batch.preference_gap.float())
    elif cfg.criterion == "implicit" and cfg.anchor_draws > 0:
        # the implicit reward gap D_r - D_w on K own draws, each draw shared by the winner and its reference sample
        a = (batch.anchor_noise, batch.anchor_t)
        d = [anchor_errors(policy, scheduler, z, batch.cond, *a).float()
             - anchor_errors(reference, scheduler, z, batch.cond, *a).float() for z in (batch.z_w, batch.z_r)]
        evidence = anchor_from_draws(d[1] - d[0])
    elif cfg.anchor_draws > 0:
        pol = anchor_errors(policy, scheduler, batch.z_w, batch.cond, batch.anchor_noise, batch.anchor_t)
        ref = batch.e_ref_anchor
        if ref is None:
            ref = anchor_errors(reference, scheduler, batch.z_w, batch.cond, batch.anchor_noise, batch.anchor_t)
        evidence = anchor_from_draws(ref.float() - pol.float())
    return seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=cfg.beta, anchor=anchor_config(cfg), evidence=evidence)


def anchor_config(cfg: TrainConfig) -> AnchorConfig:
    """The train section's anchor settings as the loss takes them."""
    margin = {"oracle": cfg.oracle_margin, "oracle_drop": cfg.oracle_margin, "reward": cfg.reward_margin}
    return AnchorConfig(cfg.criterion, cfg.tie_tol, cfg.anchor_margin_z, cfg.anchor_fallback, cfg.anchor_soft_c,
                        margin.get(cfg.criterion, 0.0))


def anchor_draws(seed: int, round_k: int, update: int, micro: int, global_mb: int, draws: int, shape, T: int,
                 noise_offset: float = 0.0, frame_corr: float = 0.0):
    """The anchor's K (noise, t) draws per winner of one global micro-batch: (B, K, *shape), (B, K).

    Seeded apart from the loss's draw (plan.round_noise), so the anchor's decision is independent of
    the (noise, t) the loss is evaluated on."""
    from ..seeding import seed63
    from .plan import draw_noise

    g = torch.Generator().manual_seed(seed63("anchor", seed, round_k, update, micro))
    noise, t = draw_noise(g, global_mb * draws, shape, T, noise_offset, frame_corr)
    return noise.reshape(global_mb, draws, *shape), t.reshape(global_mb, draws)


def positions_of(update: int, micro: int, grad_accum: int, global_mb: int, micro_batch: int, process: int):
    """Positions in the round (indices into the round's winner rows) of one process's micro-batch."""
    start = (update * grad_accum + micro) * global_mb + process * micro_batch
    return np.arange(start, start + micro_batch)
