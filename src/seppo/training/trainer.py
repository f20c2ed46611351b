"""Round k, step 3: TRAIN the policy theta_{k-1} -> theta_k against the selected reference.

One loop for SePPO and its baselines (sft, dpo), so comparisons share all other code. Per update:
for each micro-batch, one policy forward on 2B latents (winners and reference samples, the same
noise and timestep) and one reference forward on the same 2B, then the loss of `losses.py`.
Resumable: state is saved atomically every `checkpoint_every` updates, and noise/timesteps/data
are functions of (seed, round, update), so a resumed run ends with the same weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.cache import LatentCache
from ..io_utils import atomic_dir, write_json
from ..models.conditioning import as_cond
from .losses import dpo_loss, per_sample_error, seppo_loss, sft_loss
from .plan import Layout, round_noise
from .reference_samples import load_reference_errors, load_refsamples, round_plan

STATE_VERSION = 1


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses; the last good state is kept on disk."""


def resolve_mixed_precision(setting: str) -> str:
    if setting == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if setting in ("fp16",) and not torch.cuda.is_available():
        raise ValueError("train.mixed_precision=fp16 needs a CUDA device; use 'no' or 'auto' on CPU")
    return setting


def lr_factor(cfg: TrainConfig, global_update: int) -> float:
    """Warm-up then constant or cosine, over the whole run (all rounds)."""
    if cfg.lr_warmup and global_update < cfg.lr_warmup:
        return (global_update + 1) / cfg.lr_warmup
    if cfg.lr_schedule == "constant":
        return 1.0
    total = cfg.rounds * cfg.updates_per_round
    progress = (global_update - cfg.lr_warmup) / max(1, total - cfg.lr_warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _config_hash(cfg: TrainConfig, k: int, reference: str) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([cfg.model_dump(), k, reference], sort_keys=True).encode()).hexdigest()[:16]


def _load_unet(folder: Path, dtype=None):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True,
                                                torch_dtype=dtype)


def _add_lora(unet, cfg: TrainConfig):
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or cfg.lora_rank,
                                init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))


def _optimizer(params, cfg: TrainConfig):
    if cfg.use_8bit_adam:
        if not torch.cuda.is_available():
            raise ValueError("train.use_8bit_adam needs CUDA (bitsandbytes); set it to false on CPU")
        import bitsandbytes as bnb

        cls = bnb.optim.AdamW8bit
    else:
        cls = torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)


class _Batches:
    """Latents and text embeddings of each micro-batch of a round (global, then split per process)."""

    def __init__(self, cfg: TrainConfig, k: int, cache_dir: Path, layout: Layout, processes: int):
        self.cfg, self.k = cfg, k
        self.winners = LatentCache(cache_dir)
        if cfg.loss == "dpo":
            self.losers = LatentCache(cache_dir, "losers")
            rows = round_plan(cfg, k, self.losers, processes)
            by_uid = {u: i for i, u in enumerate(self.winners.index.winner_uid)}
            self.second_rows = rows
            self.rows = np.array([by_uid[u] for u in self.losers.index.winner_uid.to_numpy()[rows]])
        else:
            self.rows = round_plan(cfg, k, self.winners, processes)
            self.second = None
            if cfg.loss == "seppo":
                lat, ref_rows = load_refsamples(layout.refsamples(k))
                if not np.array_equal(ref_rows, self.rows):
                    raise RuntimeError(
                        f"{layout.refsamples(k)} was generated for other winners than this round's "
                        "(params changed since?): rerun the refsamples stage")
                self.second = lat
        self.e_ref = None
        if cfg.reference_errors == "precomputed":
            self.e_ref = load_reference_errors(layout.refsamples(k), len(self.rows))
        self.global_mb = cfg.micro_batch * processes

    def get(self, update: int, micro: int, process: int):
        start = (update * self.cfg.grad_accum + micro) * self.global_mb + process * self.cfg.micro_batch
        pos = np.arange(start, start + self.cfg.micro_batch)
        rows = self.rows[pos]
        z_w = self.winners.latents(rows)
        cond = self.winners.conditioning(rows)
        if self.cfg.loss == "seppo":
            z_r = self.second[pos].float()
        elif self.cfg.loss == "dpo":
            z_r = self.losers.latents(self.second_rows[pos])
        else:
            z_r = None
        e_ref = None if self.e_ref is None else (self.e_ref[0][pos], self.e_ref[1][pos])
        return z_w, z_r, cond, e_ref

    def noise(self, update: int, micro: int, shape, process: int, T: int):
        """The same global draw whatever the number of processes; this process takes its slice."""
        noise, t = round_noise(self.cfg.seed, self.k, update, micro, self.global_mb, shape, T)
        sl = slice(process * self.cfg.micro_batch, (process + 1) * self.cfg.micro_batch)
        return noise[sl], t[sl]


def _fused_batch(scheduler, z_w, z_r, cond, noise, t):
    """The 2B batch both UNets see: winner half, reference-sample half, the same (noise, t)."""
    cond = as_cond(cond)
    x = torch.cat([scheduler.add_noise(z_w, noise, t), scheduler.add_noise(z_r, noise, t)])
    return x, torch.cat([t, t]), cond.twice(), torch.cat([noise, noise])


def _reference_forward(reference, x, tt, cc, target):
    with torch.no_grad():
        e = per_sample_error(
            reference(x.to(reference.dtype), tt, **cc.to(reference.dtype).unet_kwargs()).sample, target)
    return e.chunk(2)


def reference_errors(reference, scheduler, z_w, z_r, cond, noise, t):
    """(e_ref^w, e_ref^r): the reference UNet's fused 2B forward, no gradient."""
    return _reference_forward(reference, *_fused_batch(scheduler, z_w, z_r, cond, noise, t))


def compute_loss(cfg: TrainConfig, policy, reference, scheduler, z_w, z_r, cond, noise, t, e_ref=None):
    """One micro-batch: fused 2B forwards with shared (noise, t); returns (loss, stats).

    ``e_ref``: the reference's (e_ref^w, e_ref^r) when precomputed by the refsamples stage; else the
    reference UNet runs here, on the same fused batch as the policy."""
    if cfg.loss == "sft":
        cond = as_cond(cond)
        x = scheduler.add_noise(z_w, noise, t)
        e_pol_w = per_sample_error(policy(x, t, **cond.unet_kwargs()).sample, noise)
        return sft_loss(e_pol_w)
    x, tt, cc, target = _fused_batch(scheduler, z_w, z_r, cond, noise, t)
    e_pol = per_sample_error(policy(x, tt, **cc.unet_kwargs()).sample, target)
    e_pol_w, e_pol_r = e_pol.chunk(2)
    e_ref_w, e_ref_r = e_ref if e_ref is not None else _reference_forward(reference, x, tt, cc, target)
    if cfg.loss == "dpo":
        return dpo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=cfg.beta)
    return seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=cfg.beta, criterion=cfg.criterion,
                      tie_tol=cfg.tie_tol)


def _save_state(path: Path, unet_trainable: dict, optimizer, update: int, bad: int, chash: str) -> None:
    from safetensors.torch import save_file

    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in unet_trainable.items()}, str(tmp / "weights.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "meta.json", {"version": STATE_VERSION, "update": update, "bad_steps": bad,
                                       "config": chash})


def _trainable_state(unet) -> dict:
    return {n: p for n, p in unet.named_parameters() if p.requires_grad}


def _trim_live(live_dir: Path, keep_below: int) -> None:
    """Drop DVCLive rows logged after the state we resume from (they will be logged again)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv") if live_dir.exists() else []:
        lines = tsv.read_text().splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[0]) < keep_below]
        tsv.write_text("\n".join(kept) + "\n")


def run_train(cfg: TrainConfig, k: int, layout: Layout, cache_dir: Path, stop_after: int | None = None) -> dict:
    """Train round k and save theta_k. ``stop_after`` (tests) ends the process after N updates."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from dvclive import Live

    selection = json.loads(layout.selection(k).read_text())
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
    P, rank = acc.num_processes, acc.process_index
    if P != cfg.processes:
        raise ValueError(f"launched with {P} processes but train.processes={cfg.processes}: the round's "
                         "winners and reference samples are sized by train.processes; make them agree")
    policy_dir = layout.checkpoint(k - 1)
    ref_dir = Path(selection["reference"])
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)

    torch.manual_seed(cfg.seed)
    policy = _load_unet(policy_dir)
    if cfg.lora_rank:
        _add_lora(policy, cfg)
    if cfg.gradient_checkpointing:
        policy.enable_gradient_checkpointing()
    if cfg.channels_last:
        policy.to(memory_format=torch.channels_last)
    policy.train()
    reference = None
    if cfg.loss != "sft" and cfg.reference_errors == "in_step":
        reference = _load_unet(ref_dir, weight_dtype).eval().requires_grad_(False)
        if cfg.channels_last:
            reference.to(memory_format=torch.channels_last)
        if cfg.offload_reference:
            from accelerate import cpu_offload

            cpu_offload(reference, execution_device=acc.device)
        else:
            reference = reference.to(acc.device)
    noise_sched = DDPMScheduler.from_pretrained(policy_dir, subfolder="scheduler")
    T = noise_sched.config.num_train_timesteps

    optimizer = _optimizer([p for p in policy.parameters() if p.requires_grad], cfg)
    prev_opt = policy_dir / "seppo_trainer" / "optimizer.pt"
    if prev_opt.exists() and not cfg.lora_rank:  # one continuous run across rounds
        optimizer.load_state_dict(torch.load(prev_opt, weights_only=True))
    chash = _config_hash(cfg, k, str(ref_dir))
    start, bad = 0, 0
    state_dir = layout.state(k)
    if (state_dir / "meta.json").exists():
        meta = json.loads((state_dir / "meta.json").read_text())
        if meta.get("config") == chash and meta.get("version") == STATE_VERSION:
            from safetensors.torch import load_file

            weights = load_file(str(state_dir / "weights.safetensors"))
            params = _trainable_state(policy)
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(weights[n])
            optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
            start, bad = meta["update"], meta["bad_steps"]
            acc.print(f"round {k}: resuming from update {start} ({state_dir})")
        else:
            acc.print(f"round {k}: ignoring stale state in {state_dir} (params changed)")
    policy, optimizer = acc.prepare(policy, optimizer)
    if cfg.compile:
        acc.unwrap_model(policy).compile()

    batches = _Batches(cfg, k, cache_dir, layout, P)
    latent_shape = tuple(batches.winners.latents([0]).shape[1:])
    acc.print(f"round {k}: loss={cfg.loss} reference={ref_dir} policy={policy_dir} "
              f"effective batch = {P} processes x {cfg.micro_batch} x {cfg.grad_accum} accumulation "
              f"= {P * cfg.micro_batch * cfg.grad_accum}; mixed precision {acc.mixed_precision}")
    live = None
    if acc.is_main_process:
        if start:
            _trim_live(layout.live(k), start)
        live = Live(str(layout.live(k)), resume=bool(start), save_dvc_exp=False, dvcyaml=None,
                    report=None)
        live.step = start
    history = []
    from tqdm.auto import tqdm

    bar = tqdm(range(start, cfg.updates_per_round), desc=f"round {k}", disable=not acc.is_main_process,
               initial=start, total=cfg.updates_per_round)
    for update in bar:
        t0 = time.perf_counter()
        sums, finite = {}, True
        for micro in range(cfg.grad_accum):
            z_w, z_r, cond, e_ref = batches.get(update, micro, rank)
            noise, t = batches.noise(update, micro, latent_shape, rank, T)
            dev = acc.device
            args = [x.to(dev) if x is not None else None for x in (z_w, z_r, cond, noise, t)]
            if e_ref is not None:
                args.append(tuple(e.to(dev) for e in e_ref))
            sync = contextlib.nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(policy)
            with sync, acc.autocast():
                loss, stats = compute_loss(cfg, policy, reference, noise_sched, *args)
                finite = finite and bool(torch.isfinite(loss))
                if finite:
                    acc.backward(loss / cfg.grad_accum)
            for key, v in {"loss": float(loss.detach()), **stats.as_dict()}.items():
                sums[key] = sums.get(key, 0.0) + v / cfg.grad_accum
        if P > 1:  # every process skips together; logged stats are means over all processes
            flag = torch.tensor(1.0 if finite else 0.0, device=acc.device)
            finite = bool(acc.reduce(flag, "min").item())
            keys = sorted(sums)
            vals = acc.reduce(torch.tensor([sums[k] for k in keys], device=acc.device, dtype=torch.float64), "mean")
            sums = dict(zip(keys, vals.tolist()))
        lr_now = cfg.lr * lr_factor(cfg, (k - 1) * cfg.updates_per_round + update)
        if finite:
            bad = 0
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            gnorm = acc.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
        else:
            bad += 1
            gnorm = float("nan")
            acc.print(f"round {k} update {update}: non-finite loss, step skipped ({bad} in a row)")
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        row = {**sums, "lr": lr_now, "grad_norm": float(gnorm), "skipped": 0.0 if finite else 1.0,
               "samples_per_s": P * cfg.micro_batch * cfg.grad_accum / dt}
        history.append(row)
        if live is not None and update % cfg.log_every == 0:
            for key, v in row.items():
                if math.isfinite(v):
                    live.log_metric(f"train/{key}", v)
            live.next_step()
        bar.set_postfix(loss=f"{row['loss']:.4f}", flip=f"{row['flip_rate']:.2f}")
        if bad >= cfg.max_bad_steps:
            raise TrainingDiverged(
                f"round {k}: {bad} consecutive non-finite losses at update {update} "
                f"(train.max_bad_steps={cfg.max_bad_steps}); last good state: {state_dir}. "
                "Lower train.lr or train.beta, or check the cache for NaNs.")
        done = update + 1
        if acc.is_main_process and (done % cfg.checkpoint_every == 0) and finite and done < cfg.updates_per_round:
            _save_state(state_dir, _trainable_state(acc.unwrap_model(policy)), optimizer, done, bad, chash)
            acc.print(f"round {k}: state saved at update {done}", flush=True)
        if stop_after is not None and done >= stop_after:
            os._exit(3)  # simulate a crash: no cleanup, no final save
    if live is not None:
        live.end()
    acc.wait_for_everyone()
    import resource

    summary = {"round": k, "loss_type": cfg.loss, "reference": str(ref_dir), "policy_init": str(policy_dir),
               "reference_errors": cfg.reference_errors,
               "updates": cfg.updates_per_round, "effective_batch": P * cfg.micro_batch * cfg.grad_accum,
               # peak resident memory of this process (Linux: KiB): the bank stays on disk, so it
               # must not grow with the round number
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if history:
        for key in ("loss", "flip_rate", "implicit_acc", "d_w", "d_r", "samples_per_s"):
            vals = [h[key] for h in history if math.isfinite(h[key])]
            summary[f"mean_{key}"] = float(np.mean(vals)) if vals else None
    if acc.is_main_process:
        _save_checkpoint(acc.unwrap_model(policy), optimizer, cfg, policy_dir, layout.checkpoint(k), summary)
        write_json(layout.metrics(k), summary)
        shutil.rmtree(state_dir, ignore_errors=True)
    acc.wait_for_everyone()
    return summary


def _save_checkpoint(policy, optimizer, cfg: TrainConfig, init_dir: Path, out: Path, summary: dict) -> None:
    """theta_k as a full diffusers pipeline folder: the policy UNet + theta_{k-1}'s other parts."""
    with atomic_dir(out) as tmp:
        for item in init_dir.iterdir():
            if item.name in ("unet", "seppo_trainer", "seppo_round.json"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        unet = policy
        if cfg.lora_rank:
            unet.fuse_lora()
            unet.unload_lora()
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        (tmp / "seppo_trainer").mkdir()
        if not cfg.lora_rank:
            torch.save(optimizer.state_dict(), tmp / "seppo_trainer" / "optimizer.pt")
        # wall-clock numbers stay out of the checkpoint: a re-run with the same params then yields
        # a bit-identical folder, and DVC does not re-run everything downstream
        write_json(tmp / "seppo_round.json",
                   {k: v for k, v in summary.items() if k not in ("mean_samples_per_s", "peak_rss_mb")})
