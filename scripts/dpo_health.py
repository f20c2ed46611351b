"""Why does Diffusion-DPO on the real pairs not clear the base model here? One suspect measured: the losers (and the
winners) are other generators' images, far from what theta_0 itself draws.

    python scripts/dpo_health.py [--round 1] [--out reports/study/<block>/dpo_health.json]

For round 1 of the current workspace (`dvc repro` done, train.seed as in params.yaml) it measures theta_0 at the
training's own (noise, t) draws (plan.round_noise: the draws DPO and SePPO train on):

- its denoising error e(x) on the DPO round's winners, their real losers, and on its own samples (the SePPO round's
  reference samples, data/refsamples/round_k), overall and by timestep band;
- the ground-truth utility of each set (decoded through theta_0's VAE, Shapeland's utility);
- for DPO's pairs, how often the winner already has the lower error (theta_0's implicit "accuracy" at the start:
  a DPO loss with D = 0 everywhere starts at log 2 whatever it is, but how far apart e(w) and e(l) sit tells how
  large the moves are that the loss asks of the policy).

No clock is read and every draw is the training's own: the same workspace gives the same JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler

    from seppo.config import load_params
    from seppo.data.cache import LatentCache
    from seppo.io_utils import write_json
    from seppo.models.pipeline import load_unet
    from seppo.training.forward import fused_batch, _errors
    from seppo.training.oracle import _utilities
    from seppo.layout import Layout
    from seppo.training.plan import resolve_noise_offset, round_noise
    from seppo.training.reference_samples import load_refsamples, round_plan

    ap = argparse.ArgumentParser()
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("reports/study/dpo_health.json"))
    args = ap.parse_args()
    k = args.round
    params = load_params(Path("params.yaml"))
    cfg = params.train
    lay = Layout(Path("."))
    base = lay.checkpoint(0)
    winners, losers = LatentCache(Path("data/cache")), LatentCache(Path("data/cache"), "losers")
    dpo_rows = round_plan(cfg.model_copy(update={"loss": "dpo"}), k, losers, cfg.processes)
    by_uid = {u: i for i, u in enumerate(winners.index.winner_uid)}
    w_rows = np.array([by_uid[u] for u in losers.index.winner_uid.to_numpy()[dpo_rows]])
    own, own_rows = load_refsamples(lay.refsamples(k))
    sched = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    unet = load_unet(base).eval()
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae").eval()
    offset = resolve_noise_offset(cfg, base)
    T = sched.config.num_train_timesteps
    mb = cfg.micro_batch * cfg.processes
    shape = tuple(winners.latents([0]).shape[1:])
    e = {"winner": [], "loser": [], "own_winner": [], "own_sample": []}
    ts = []
    n = min(len(dpo_rows), len(own_rows))
    with torch.no_grad():
        for i, lo in enumerate(range(0, n, mb)):
            sl = slice(lo, min(lo + mb, n))
            noise, t = round_noise(cfg.seed, k, i // cfg.grad_accum, i % cfg.grad_accum, mb, shape, T, offset)
            m = sl.stop - sl.start
            noise, t = noise[:m], t[:m]
            for (a, b), (zw, zr, cond) in (
                    (("winner", "loser"), (winners.latents(w_rows[sl]), losers.latents(dpo_rows[sl]),
                                           winners.conditioning(w_rows[sl]))),
                    (("own_winner", "own_sample"), (winners.latents(own_rows[sl]), own[sl].float(),
                                                    winners.conditioning(own_rows[sl])))):
                x, tt, cc, target = fused_batch(sched, zw, zr, cond, noise, t)
                ew, er = _errors(unet, x, tt, cc, target).chunk(2)
                e[a].append(ew.numpy())
                e[b].append(er.numpy())
            ts.append(t.numpy())
    e = {key: np.concatenate(v).astype(np.float64) for key, v in e.items()}
    t = np.concatenate(ts)
    caps_dpo = [winners.captions[c] for c in winners.caption_id[w_rows[:n]]]
    caps_own = [winners.captions[c] for c in winners.caption_id[own_rows[:n]]]
    u = {"winner": _utilities(vae, winners.latents(w_rows[:n]), caps_dpo),
         "loser": _utilities(vae, losers.latents(dpo_rows[:n]), caps_dpo),
         "own_winner": _utilities(vae, winners.latents(own_rows[:n]), caps_own),
         "own_sample": _utilities(vae, own[:n].float(), caps_own)}
    bands = [(0, 250), (250, 500), (500, 750), (750, 1000)]
    out = {
        "round": k, "positions": int(n), "train_seed": cfg.seed, "base": str(base), "noise_offset": offset,
        "error_mean": {key: float(v.mean()) for key, v in e.items()},
        "error_by_t": {f"{a}-{b}": {key: float(v[(t >= a) & (t < b)].mean()) for key, v in e.items()}
                       for a, b in bands},
        "utility_mean": {key: float(np.mean(v)) for key, v in u.items()},
        # paired on the draw: how much harder theta_0 finds the second image of each kind of pair
        "error_gap_loser_minus_winner": float(np.mean(e["loser"] - e["winner"])),
        "error_gap_own_minus_winner": float(np.mean(e["own_sample"] - e["own_winner"])),
        "share_loser_error_above_winner": float(np.mean(e["loser"] > e["winner"])),
        "share_own_error_above_winner": float(np.mean(e["own_sample"] > e["own_winner"])),
        "utility_gap_winner_minus_loser": float(np.mean(u["winner"] - u["loser"])),
        "utility_gap_winner_minus_own": float(np.mean(u["own_winner"] - u["own_sample"])),
    }
    write_json(args.out, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
