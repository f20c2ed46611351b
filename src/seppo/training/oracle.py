"""Is the anchor right? The embedded world has a ground truth, so this project can check.

The refsamples stage decodes every reference sample and its winner (both from latents, through
the same VAE, so they are compared as the trainer sees them) and scores both with Shapeland's
pixel utility u. A reference sample "should flip" (be learned as a second winner) when its u beats
its winner's: the oracle label. Training keeps, per position of the round, the anchor's s and its
statistic (gap = e_ref^w - e_pol^w, averaged over the anchor's draws when it has them), and here
they are held against the oracle: flip rates, the anchor's accuracy, and the AUC of its gap.

Real data has no such truth: with captions that are not Shapeland's the oracle is simply absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.stats import auc, auc_ci  # noqa: F401  (oracle.auc: the probe's and the tests' name)

ORACLE_FILE = "oracle.parquet"


def embedded_captions(captions: list[str], video: bool = False) -> bool:
    """True when every caption is a Shapeland caption (a Shapeland clip caption with ``video``): the ground-truth
    utility can score it."""
    from ..world.scene import CaptionParseError, parse_caption
    from ..world.video import ClipCaptionError, parse_clip_caption

    parse = parse_clip_caption if video else parse_caption
    try:
        for c in set(captions):
            parse(c)
    except (CaptionParseError, ClipCaptionError):
        return False
    return True


def decode_to_uint8(vae, latents, batch: int = 64) -> np.ndarray:
    """Latents in the cache's scaled space -> (N, H, W, 3) uint8 images."""
    import torch

    out = []
    sf = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    dtype = next(vae.parameters()).dtype
    device = next(vae.parameters()).device
    with torch.no_grad():
        for i in range(0, len(latents), batch):
            z = latents[i : i + batch].to(device, dtype) / sf + shift
            img = vae.decode(z).sample.float().clamp(-1, 1)
            out.append(((img + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def _utilities(vae, latents, captions: list[str]) -> np.ndarray:
    """Images (N, C, h, w) by the image utility; clips (N, C, F, h, w), decoded frame by frame, by the clip utility."""
    if latents.dim() == 5:
        from ..world.video import clip_utilities

        n, c, f = latents.shape[:3]
        frames = decode_to_uint8(vae, latents.permute(0, 2, 1, 3, 4).reshape(n * f, c, *latents.shape[3:]))
        return clip_utilities(frames.reshape(n, f, *frames.shape[1:]), captions)
    from ..world.utility import utilities

    return utilities(decode_to_uint8(vae, latents), captions)


def score_positions(vae, winner_latents, reference_latents, captions: list[str]) -> pd.DataFrame:
    """u of each position's winner and reference sample (images or clips), and the oracle label."""
    u_w = _utilities(vae, winner_latents, captions)
    u_r = _utilities(vae, reference_latents, captions)
    return pd.DataFrame({"position": np.arange(len(captions)), "u_winner": u_w, "u_reference": u_r,
                         "oracle_flip": u_r > u_w})


def load(folder: Path) -> pd.DataFrame | None:
    path = Path(folder) / ORACLE_FILE
    return pd.read_parquet(path) if path.exists() else None


def batch_metrics(oracle: pd.DataFrame, records: dict, positions: np.ndarray) -> dict:
    """Per-update diagnostics for the training log."""
    truth = oracle["oracle_flip"].to_numpy()[positions]
    s = records["s"][positions]
    return {"oracle_flip_rate": float(truth.mean()), "anchor_accuracy": float(np.mean((s < 0) == truth))}


def position_table(records: dict, rows: np.ndarray, captions: list[str], updates: np.ndarray,
                   oracle: pd.DataFrame | None, rewards: pd.DataFrame | None) -> pd.DataFrame:
    """One row per position of the round: which winner, when it was trained on, the criterion's evidence and
    decision, and the truth (u_winner, u_reference) and scorer margin where they exist."""
    df = pd.DataFrame({"position": np.arange(len(rows)), "update": updates, "row": rows, "prompt": captions})
    for key, v in records.items():
        df[key] = v
    if oracle is not None:
        df[["u_winner", "u_reference", "oracle_flip"]] = oracle[["u_winner", "u_reference", "oracle_flip"]].to_numpy()
        df["oracle_flip"] = df["oracle_flip"].astype(bool)
    if rewards is not None:
        df["r_winner"], df["r_reference"] = rewards["r_winner"].to_numpy(), rewards["r_reference"].to_numpy()
        df["reward_margin"] = df["r_reference"] - df["r_winner"]
    return df


def round_diagnostics(records: dict, oracle: pd.DataFrame | None) -> dict:
    """The round's anchor against the truth, and D_w / D_r split by the anchor's decision."""
    s, d_w, d_r = records["s"], records["d_w"], records["d_r"]
    done = np.isfinite(s)
    out: dict = {"anchor_flip_rate": float(np.mean(s[done] < 0)) if done.any() else None}
    for name, mask in (("loser", s > 0), ("winner", s < 0), ("dropped", s == 0)):
        m = mask & done
        out[f"share_s_{name}"] = float(m.sum() / max(done.sum(), 1))
        out[f"d_w_s_{name}"] = float(d_w[m].mean()) if m.any() else None
        out[f"d_r_s_{name}"] = float(d_r[m].mean()) if m.any() else None
    if oracle is None:
        return out
    truth = oracle["oracle_flip"].to_numpy().astype(bool)
    s, truth = s[done], truth[done]
    gap, loss_gap = records["anchor_gap"][done], records["gap"][done]
    implicit_gap = (d_r - d_w)[done]  # r(x_w) - r(x_r) on the loss's draw, whatever the criterion
    u_w = oracle["u_winner"].to_numpy()[done]
    decided = s != 0
    flips = float(np.mean(s[decided] < 0)) if decided.any() else 0.0
    half = len(s) // 2  # positions are in update order: the round's first and second halves
    early, late = slice(0, half), slice(half, len(s))
    out.update({
        "oracle_flip_rate": float(truth.mean()),
        "oracle_u_winner": float(oracle["u_winner"].to_numpy()[done].mean()),
        "oracle_u_reference": float(oracle["u_reference"].to_numpy()[done].mean()),
        # the anchor's test: "the reference fits the winner better" (gap < 0) vs the truth
        "anchor_accuracy": float(np.mean((gap < 0) == truth)),
        # the anchor's decisions where it made one (s != 0): flipped exactly when it should
        "decision_accuracy": float(np.mean((s[decided] < 0) == truth[decided])) if decided.any() else None,
        # a flipper that flips at random at the same rate, for the decision accuracy above
        "random_flipper_accuracy": float(flips * truth.mean() + (1 - flips) * (1 - truth.mean())),
        # how well the criterion's statistic ranks should-flip samples first (0.5 = chance): the anchor's gap
        # (averaged over its draws when it has them), the implicit-reward gap for implicit, the score gap
        # for oracle / reward; with a 95% CI over positions, and over the round's first and second halves
        "anchor_auc": auc(-gap, truth),
        "anchor_auc_ci95": auc_ci(-gap, truth),
        "anchor_auc_early": auc(-gap[early], truth[early]),
        "anchor_auc_late": auc(-gap[late], truth[late]),
        # the paper's single-draw anchor on the loss's own draw, logged under every criterion
        "loss_draw_auc": auc(-loss_gap, truth),
        "loss_draw_auc_ci95": auc_ci(-loss_gap, truth),
        # the implicit reward on the loss's draw, logged under every criterion
        "implicit_auc": auc(-implicit_gap, truth),
        "implicit_auc_ci95": auc_ci(-implicit_gap, truth),
        # a ceiling that needs no model: a weak winner is likely beaten (-u_winner alone)
        "winner_only_auc": auc(-u_w, truth),
        # what a perfect anchor would have done with these samples
        "oracle_agreement_of_none": float(np.mean(~truth)),
    })
    return out
