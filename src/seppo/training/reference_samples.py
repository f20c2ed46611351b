"""Round k, steps 1 and 2: SELECT the reference checkpoint, GENERATE its reference samples.

The same checkpoint does both jobs (docs/seppo.md, section 3): the trainer reads the selection
written here and loads that checkpoint's UNet as the reference. Samples stay in latent space,
are generated in large batches once per round, with the real prompt (no dropout), and each has its
own seeded generator, so a sample does not depend on batch size or process count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..data.cache import LatentCache
from ..io_utils import atomic_dir, write_json
from .plan import Layout, ref_sample_keys, round_noise, round_rows, samples_per_round
from .selection import select_reference, selection_rng


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


def round_plan(cfg: TrainConfig, k: int, cache: LatentCache, processes: int = 1):
    n = samples_per_round(cfg.updates_per_round, cfg.micro_batch, cfg.grad_accum, processes)
    return round_rows(len(cache), k, n, cfg.seed)


def generate_latents(pipe, prompts: list[str], seeds: list[int], sampling, batch_size: int):
    """Latents (N, C, h, w) in the scaled latent space of the training cache."""
    import torch

    from ..models.pipeline import set_sampler

    set_sampler(pipe, sampling.sampler)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds[i : i + batch_size]]
        with torch.no_grad():
            lat = pipe(prompts[i : i + batch_size], num_inference_steps=sampling.steps,
                       guidance_scale=sampling.guidance, generator=gens, output_type="latent").images
        out.append(lat.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def run_refsamples(cfg: TrainConfig, k: int, layout: Layout, cache_dir: Path) -> dict:
    """Generate round k's reference samples; launched on P processes, each generates every P-th
    sample and the main process writes them all."""
    import torch
    from safetensors.torch import save_file

    from ..distributed import process_state, split_map

    selection = json.loads(layout.selection(k).read_text())
    out = layout.refsamples(k)
    cache = LatentCache(cache_dir)
    rows = round_plan(cfg, k, cache, cfg.processes)
    rank, world, main = process_state()
    settings = {"round": k, "checkpoint": selection["reference"], "mode": cfg.ref_samples,
                "per_prompt": cfg.ref_samples_per_prompt, **cfg.ref_sampling.model_dump(),
                "rows": len(rows)}
    if cfg.loss != "seppo":
        settings["note"] = f"train.loss={cfg.loss} reads no reference samples"
        if main:
            with atomic_dir(out) as tmp:
                write_json(tmp / "settings.json", settings)
        return settings
    captions = [cache.captions[c] for c in cache.caption_id[rows]]
    uids = cache.index.winner_uid.to_numpy()[rows].tolist()
    index, prompts, seeds = ref_sample_keys(captions, uids, cfg.ref_samples, cfg.ref_samples_per_prompt, k,
                                            cfg.seed)
    from ..models.pipeline import load_pipeline

    pipe = load_pipeline(selection["reference"])
    if torch.cuda.is_available():
        pipe.to(f"cuda:{rank % torch.cuda.device_count()}", torch.float16)
    t0 = time.perf_counter()
    lat = split_map(len(prompts), lambda idx: generate_latents(
        pipe, [prompts[i] for i in idx], [seeds[i] for i in idx], cfg.ref_sampling, cfg.ref_batch_size),
        torch.stack)
    seconds = time.perf_counter() - t0
    if not main:  # the main process writes the round's samples
        return settings
    errors = None
    if cfg.reference_errors == "precomputed":
        t1 = time.perf_counter()
        errors = precompute_reference_errors(cfg, k, pipe.unet, selection["reference"], cache, rows,
                                             lat[torch.as_tensor(index)])
        settings["seconds_reference_errors"] = round(time.perf_counter() - t1, 2)
    with atomic_dir(out) as tmp:
        save_file({"latents": lat.contiguous()}, str(tmp / "latents.safetensors"))
        if errors is not None:
            save_file({"e_ref_w": errors[0].contiguous(), "e_ref_r": errors[1].contiguous()},
                      str(tmp / "reference_errors.safetensors"))
        pd.DataFrame({"position": np.arange(len(rows)), "row": rows, "sample": index}).to_parquet(
            tmp / "index.parquet", index=False)
        pd.DataFrame({"sample": np.arange(len(prompts)), "prompt": prompts,
                      "seed": np.array(seeds, dtype=np.int64)}).to_parquet(tmp / "samples.parquet", index=False)
        settings.update(samples=len(prompts), processes=world, seconds=round(seconds, 2),
                        samples_per_second=round(len(prompts) / max(seconds, 1e-9), 2))
        write_json(tmp / "settings.json", settings)
    return settings


def precompute_reference_errors(cfg: TrainConfig, k: int, unet, reference_dir: str, cache: LatentCache,
                                rows: np.ndarray, z_r_per_position):
    """The reference's (e_ref^w, e_ref^r) for every position of the round, with exactly the noise and
    timesteps the trainer will draw there (plan.round_noise), in batches of ``ref_batch_size`` positions."""
    import torch
    from diffusers import DDPMScheduler

    from .trainer import reference_errors

    sched = DDPMScheduler.from_pretrained(reference_dir, subfolder="scheduler")
    T = sched.config.num_train_timesteps
    global_mb = cfg.micro_batch * cfg.processes
    shape = tuple(cache.latents(rows[:1]).shape[1:])
    device = unet.device
    noise, t = [], []  # the trainer's draws, global micro-batch by global micro-batch
    for update in range(cfg.updates_per_round):
        for micro in range(cfg.grad_accum):
            nz, tt = round_noise(cfg.seed, k, update, micro, global_mb, shape, T)
            noise.append(nz)
            t.append(tt)
    noise, t = torch.cat(noise), torch.cat(t)
    e_w, e_r = torch.zeros(len(rows)), torch.zeros(len(rows))
    for lo in range(0, len(rows), cfg.ref_batch_size):  # large batches: positions are independent
        pos = np.arange(lo, min(lo + cfg.ref_batch_size, len(rows)))
        cond = cache.conditioning(rows[pos]).to(device)
        w, r = reference_errors(unet, sched, cache.latents(rows[pos]).to(device), z_r_per_position[pos].to(device),
                                cond, noise[pos].to(device), t[pos].to(device))
        e_w[pos], e_r[pos] = w.float().cpu(), r.float().cpu()
    return e_w, e_r


def load_reference_errors(folder: Path, n: int):
    """(e_ref^w, e_ref^r) per position, written by the refsamples stage with reference_errors=precomputed."""
    from safetensors.torch import load_file

    path = folder / "reference_errors.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train.reference_errors=precomputed needs the refsamples "
                                "stage run with the same setting (dvc repro re-runs it)")
    e = load_file(str(path))
    if len(e["e_ref_w"]) != n:
        raise RuntimeError(f"{path}: {len(e['e_ref_w'])} positions, the round has {n}: rerun the refsamples stage")
    return e["e_ref_w"], e["e_ref_r"]


def load_refsamples(folder: Path):
    """(latents per position (N, C, h, w), rows per position) of a round."""
    import torch
    from safetensors.torch import load_file

    idx = pd.read_parquet(folder / "index.parquet")
    lat = load_file(str(folder / "latents.safetensors"))["latents"]
    return lat[torch.from_numpy(idx["sample"].to_numpy().copy())], idx["row"].to_numpy()
