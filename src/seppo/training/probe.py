"""`seppo probe`: the anchor's statistic at FIXED checkpoints, against the oracle.

During a round the anchor's gap is measured once per position, on a policy that changes between
updates and that its own decisions shaped. The probe removes both blurs: for one policy checkpoint
and one reference checkpoint, it measures every position of round k (its winner from the latent
cache, its reference sample from data/refsamples/round_k) under ``draws`` independent (noise, t)
draws, and reports per position

- gap_mean, gap_se: the anchor's gap e_ref^w - e_pol^w averaged over the draws (the paper's statistic,
  with the noise of one draw averaged away);
- implicit_mean, implicit_se: the implicit-reward gap r(x_w) - r(x_r) = D_r - D_w on the same draws;
- gap_draw0: the first draw alone (what the paper's single-draw anchor sees);
- with ``scorer``: r_winner, r_reference, the preference scorer's scores (the reward criterion's statistic);

and the AUC of each against the oracle label (u_reference > u_winner), with a bootstrap CI over positions.
If the averaged, drift-free gap still ranks at ~0.5 (or below), the statistic itself carries no
information about which reference sample is better; if it ranks well, the round's drift was the problem.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..io_utils import atomic_path, write_json
from . import oracle
from ..layout import Layout
from .plan import resolve_noise_offset


def _draws(seed: int, k: int, start: int, n: int, draws: int, shape, T: int, offset: float):
    """The probe's (noise, t) for positions [start, start + n): seeded per position block, independent of the
    training draws (another seed name), the same whatever the batch size."""
    import torch

    from ..seeding import seed63
    from .plan import draw_noise

    noise, t = [], []
    for pos in range(start, start + n):
        g = torch.Generator().manual_seed(seed63("probe", seed, k, pos))
        nz, tt = draw_noise(g, draws, shape, T, offset)
        noise.append(nz)
        t.append(tt)
    return torch.stack(noise), torch.stack(t)


def run_probe(cfg: TrainConfig, k: int, layout: Layout, cache_dir: Path, policy: Path, reference: Path | None,
              draws: int, out: Path, seed: int = 0, max_positions: int | None = None, batch: int = 16,
              n_boot: int = 1000, scorer: str | None = None, scorer_models: dict | None = None) -> dict:
    import torch
    from diffusers import DDPMScheduler

    from ..data.cache import LatentCache
    from ..models.pipeline import load_unet
    from .forward import anchor_errors, check_prediction_type
    from .reference_samples import checkpoint_fingerprint, load_refsamples, round_plan

    if draws < 2:
        raise ValueError(f"--draws {draws}: the probe needs >= 2 draws per position for a standard error")
    folder = layout.refsamples(k)
    truth = oracle.load(folder)
    if truth is None:
        raise FileNotFoundError(f"{folder / oracle.ORACLE_FILE} is missing: the probe holds the statistic against the "
                                "embedded world's ground truth (train.oracle=auto on Shapeland captions)")
    if reference is None:
        reference = Path(json.loads(layout.selection(k).read_text())["reference"])
    cache = LatentCache(cache_dir)
    rows = round_plan(cfg, k, cache, cfg.processes)
    z_r, ref_rows = load_refsamples(folder)
    if not np.array_equal(ref_rows, rows):
        raise RuntimeError(f"{folder} was generated for other winners than round {k}'s plan: rerun the refsamples stage")
    n = len(rows) if max_positions is None else min(max_positions, len(rows))
    sched = DDPMScheduler.from_pretrained(policy, subfolder="scheduler")
    check_prediction_type(sched, f"{policy}/scheduler")
    T = sched.config.num_train_timesteps
    offset = resolve_noise_offset(cfg, layout.checkpoint(0))
    nets = {"policy": load_unet(policy).eval(), "reference": load_unet(reference).eval()}
    shape = tuple(cache.latents(rows[:1]).shape[1:])
    stats = {key: np.zeros((n, draws)) for key in ("e_pol_w", "e_ref_w", "e_pol_r", "e_ref_r")}
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        pos = np.arange(lo, min(lo + batch, n))
        noise, t = _draws(seed, k, lo, len(pos), draws, shape, T, offset)
        cond = cache.conditioning(rows[pos])
        for side, z in (("w", cache.latents(rows[pos])), ("r", z_r[torch.as_tensor(pos)].float())):
            for who, key in (("policy", "pol"), ("reference", "ref")):
                stats[f"e_{key}_{side}"][pos] = anchor_errors(nets[who], sched, z, cond, noise, t).double().numpy()
    gap = stats["e_ref_w"] - stats["e_pol_w"]
    implicit = (stats["e_pol_r"] - stats["e_ref_r"]) - (stats["e_pol_w"] - stats["e_ref_w"])
    se = lambda x: x.std(1, ddof=1) / np.sqrt(draws)  # noqa: E731
    table = pd.DataFrame({"position": np.arange(n), "row": rows[:n],
                          "gap_mean": gap.mean(1), "gap_se": se(gap), "gap_draw0": gap[:, 0],
                          "implicit_mean": implicit.mean(1), "implicit_se": se(implicit),
                          "u_winner": truth["u_winner"].to_numpy()[:n],
                          "u_reference": truth["u_reference"].to_numpy()[:n],
                          "oracle_flip": truth["oracle_flip"].to_numpy()[:n].astype(bool)})
    if scorer:  # the reward criterion's statistic: the scorer's preference, decoded through the reference's VAE
        from diffusers import AutoencoderKL

        from .reference_samples import reward_scores

        vae = AutoencoderKL.from_pretrained(reference, subfolder="vae").eval()
        caps = [cache.captions[c] for c in cache.caption_id[rows[:n]]]
        r = reward_scores(scorer, scorer_models or {}, vae, cache.latents(rows[:n]), z_r[:n].float(), caps)
        table["r_winner"], table["r_reference"] = r["r_winner"].to_numpy(), r["r_reference"].to_numpy()
    label = table["oracle_flip"].to_numpy()

    def scored(score: np.ndarray) -> dict:
        return {"auc": oracle.auc(score, label), "ci95": oracle.auc_ci(score, label, n_boot, seed)}

    summary = {
        "round": k, "policy": str(policy), "reference": str(reference),
        "policy_fingerprint": checkpoint_fingerprint(policy), "reference_fingerprint": checkpoint_fingerprint(reference),
        "positions": n, "draws": draws, "seed": seed, "noise_offset": offset, "n_boot": n_boot,
        "oracle_flip_rate": float(label.mean()),
        # each score ranks "should flip" high: a flip is suggested by a negative gap
        "auc": {"anchor_gap_mean": scored(-table["gap_mean"].to_numpy()),
                "anchor_gap_one_draw": scored(-table["gap_draw0"].to_numpy()),
                "implicit_gap_mean": scored(-table["implicit_mean"].to_numpy()),
                "winner_utility_only": scored(-table["u_winner"].to_numpy()),
                **({f"reward_{scorer}": scored((table["r_reference"] - table["r_winner"]).to_numpy())}
                   if scorer else {})},
        "share_gap_resolved_2se": float(np.mean(np.abs(table["gap_mean"]) > 2 * table["gap_se"])),
        "mean_gap": float(table["gap_mean"].mean()),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"round_{k}_positions.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    write_json(out / f"round_{k}.json", summary)  # no clock in it: the same inputs give the same bytes
    return {**summary, "seconds": round(time.perf_counter() - t0, 1)}
