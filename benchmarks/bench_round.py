"""A SePPO round: the pipeline's fast path vs a naive port, measured side by side in one run.

Fast path (what `seppo refsamples` + `seppo train` do): reference samples generated once for the
round in large batches, winners from the latent cache, one fused policy forward on 2B latents
and one fused reference forward on 2B. Naive port (a straightforward Diffusion-DPO adaptation):
per micro-batch, decode the winners' JPEGs, VAE-encode them, run the text encoder, generate the
micro-batch's reference samples inside the step, and run four separate forwards.

Both paths see the same winners, prompts, seeds, noise and timesteps. Run after `dvc repro cache`:
    python benchmarks/bench_round.py [--updates 8 --micro-batch 16 --winners-per-prompt 14]
Prints winner samples/s of each path and the ratios for ref_samples=per_winner (paper-faithful:
one fresh sample per winner, the naive port's sampling work) and per_prompt (2 samples per unique
prompt, reused by its winners; the target >= 5x is for this fast path).

Pick-a-Pic v2 has ~14 winners per unique prompt (851k pairs, 59k prompts); the embedded world has
at most `pairs_per_prompt`. So that the per_prompt saving is measured at Pick-a-Pic's ratio, the
round's winners are grouped `--winners-per-prompt` to a caption (each winner keeps its own latent
and takes its group's caption and embedding); `--winners-per-prompt 0` keeps the cached captions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/base"))
    ap.add_argument("--cache", type=Path, default=Path("data/cache"))
    ap.add_argument("--ingest", type=Path, default=Path("data/ingest"))
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--winners-per-prompt", type=int, default=14,
                    help="winners sharing one caption (Pick-a-Pic v2: ~14); 0 = the cache's own captions")
    ap.add_argument("--samples-per-prompt", type=int, default=2, help="train.ref_samples_per_prompt")
    ap.add_argument("--steps", type=int, default=20, help="sampler steps of the reference samples")
    args = ap.parse_args()
    for p in (args.model, args.cache, args.ingest):
        if not p.exists():
            raise SystemExit(f"{p} is missing: run `dvc repro cache` first")

    from diffusers import DDPMScheduler, UNet2DConditionModel

    from seppo.config import CacheConfig, SamplingConfig, TrainConfig
    from seppo.data.cache import LatentCache, encode_images, load_encoders, preprocess
    from seppo.models.pretrain import encode_text
    from seppo.models.pipeline import load_pipeline
    from seppo.training.losses import per_sample_error, seppo_loss
    from seppo.training.plan import ref_sample_keys, round_rows
    from seppo.training.reference_samples import generate_latents
    from seppo.models.conditioning import TextCond
    from seppo.training.forward import MicroBatch, compute_loss, reference_errors

    torch.manual_seed(0)
    sampling = SamplingConfig(steps=args.steps)
    cache = LatentCache(args.cache)
    n = args.updates * args.micro_batch
    rows = round_rows(len(cache), 1, n, seed=0)
    # the row whose caption (and text embedding) each position uses
    groups = -(-n // args.winners_per_prompt) if args.winners_per_prompt > 0 else n
    cap_rows = rows[np.arange(n) % groups]
    captions = [cache.captions[c] for c in cache.caption_id[cap_rows]]
    uids = cache.index.winner_uid.to_numpy()[rows].tolist()
    winners = pq.read_table(args.ingest / "winners.parquet", columns=["winner_uid", "image"]).to_pandas()
    jpeg = dict(zip(winners.winner_uid, winners.image))
    pipe = load_pipeline(args.model)
    vae, tok, te = load_encoders(args.model)
    ccfg = CacheConfig(**cache.manifest["policy"])
    sched = DDPMScheduler.from_pretrained(args.model, subfolder="scheduler")
    T = sched.config.num_train_timesteps
    shape = tuple(cache.latents([0]).shape[1:])

    def fresh_models():
        policy = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet").train()
        ref = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet").eval().requires_grad_(False)
        return policy, ref, torch.optim.AdamW(policy.parameters(), lr=1e-6)

    def noise_for(u):
        g = torch.Generator().manual_seed(1000 + u)
        return torch.randn((args.micro_batch, *shape), generator=g), torch.randint(0, T, (args.micro_batch,), generator=g)

    cfg = TrainConfig(beta=2000.0)

    n_samples: list[int] = []

    def fast(mode, precomputed=False):
        policy, ref, opt = fresh_models()
        t0 = time.perf_counter()
        index, prompts, seeds = ref_sample_keys(captions, uids, mode, args.samples_per_prompt, 1, 0)
        n_samples.append(len(prompts))
        lat = generate_latents(pipe, prompts, seeds, sampling, batch_size=64)[torch.tensor(index)]
        e_ref = None
        if precomputed:  # what the refsamples stage does with train.reference_errors=precomputed
            draws = [noise_for(u) for u in range(args.updates)]
            noise_all, t_all = torch.cat([d[0] for d in draws]), torch.cat([d[1] for d in draws])
            w, r = [], []
            for lo in range(0, n, 64):  # large batches, as the stage does (train.ref_batch_size)
                sl = np.arange(lo, min(lo + 64, n))
                ew, er = reference_errors(ref, sched, cache.latents(rows[sl]), lat[sl], cache.embeddings(cap_rows[sl]),
                                          noise_all[sl], t_all[sl])
                w.append(ew)
                r.append(er)
            w, r = torch.cat(w), torch.cat(r)
            e_ref = [(w[u * args.micro_batch:(u + 1) * args.micro_batch], r[u * args.micro_batch:(u + 1) * args.micro_batch])
                     for u in range(args.updates)]
        losses = []
        for u in range(args.updates):
            pos = np.arange(u * args.micro_batch, (u + 1) * args.micro_batch)
            z_w, cond = cache.latents(rows[pos]), cache.embeddings(cap_rows[pos])
            noise, t = noise_for(u)
            loss, _ = compute_loss(cfg, policy, None if precomputed else ref, sched,
                                   MicroBatch(z_w, lat[pos], TextCond(cond), noise, t,
                                              e_ref=e_ref[u] if precomputed else None))
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        return n / (time.perf_counter() - t0), losses

    def naive():
        policy, ref, opt = fresh_models()
        t0 = time.perf_counter()
        _, _, seeds = ref_sample_keys(captions, uids, "per_winner", 2, 1, 0)
        losses = []
        for u in range(args.updates):
            sl = slice(u * args.micro_batch, (u + 1) * args.micro_batch)
            x = np.stack([preprocess(jpeg[k], ccfg.resolution, ccfg, k)[0] for k in uids[sl]])
            z_w = encode_images(vae, x, ccfg, uids[sl])
            cond = encode_text(tok, te, captions[sl], args.micro_batch)
            z_r = generate_latents(pipe, captions[sl], seeds[sl], sampling, batch_size=args.micro_batch)
            noise, t = noise_for(u)
            errs = {}
            for name, net in (("pol", policy), ("ref", ref)):
                for side, z in (("w", z_w), ("r", z_r)):
                    ctx = torch.no_grad() if name == "ref" else torch.enable_grad()
                    with ctx:
                        errs[f"{name}_{side}"] = per_sample_error(net(sched.add_noise(z, noise, t), t, cond).sample, noise)
            loss, _ = seppo_loss(errs["pol_w"], errs["ref_w"], errs["pol_r"], errs["ref_r"], beta=2000.0,
                                 criterion="sign", tie_tol=cfg.tie_tol)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        return n / (time.perf_counter() - t0), losses

    # warm-up (allocator, kernels, lazy imports) so that neither path pays it inside its timing
    policy, ref, _ = fresh_models()
    generate_latents(pipe, captions[:4], list(range(4)), sampling, batch_size=4)
    compute_loss(cfg, policy, ref, sched, MicroBatch(cache.latents(rows[:4]), cache.latents(rows[4:8]),
                 TextCond(cache.embeddings(rows[:4])), *[x[:4] for x in noise_for(0)]))[0].backward()
    naive_sps, naive_losses = naive()
    fast_sps, fast_losses = fast("per_winner")
    prompt_sps, prompt_losses = fast("per_prompt")
    pre_sps, pre_losses = fast("per_prompt", precomputed=True)
    print(f"winner samples per round: {n} ({args.updates} updates x micro-batch {args.micro_batch}) over "
          f"{len(set(captions))} unique prompts; reference samples: {sampling.sampler} {args.steps} steps, "
          f"guidance {sampling.guidance}, {torch.get_num_threads()} threads")
    print(f"naive port               : {naive_sps:8.2f} winner samples/s   ({n} reference samples)")
    print(f"fast, per_winner         : {fast_sps:8.2f} winner samples/s   ratio {fast_sps / naive_sps:5.1f}x"
          f"   ({n_samples[0]} reference samples)")
    print(f"fast, per_prompt ({args.samples_per_prompt})     : {prompt_sps:8.2f} winner samples/s   ratio "
          f"{prompt_sps / naive_sps:5.1f}x (target >= 5x)   ({n_samples[1]} reference samples)")
    print(f"  + precomputed ref errors: {pre_sps:8.2f} winner samples/s   ratio {pre_sps / naive_sps:5.1f}x"
          f"   (the reference forwards move out of the training loop)")
    diff = max(abs(a - b) for a, b in zip(naive_losses, fast_losses))
    diff_pre = max(abs(a - b) for a, b in zip(prompt_losses, pre_losses))
    print(f"max |loss difference| per_prompt in-step vs precomputed reference errors: {diff_pre:.2e}")
    print(f"max |loss difference| naive vs fast (per_winner), same inputs: {diff:.2e}")


if __name__ == "__main__":
    main()
