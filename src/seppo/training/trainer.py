"""Round k, step 3: TRAIN the policy theta_{k-1} -> theta_k against the selected reference.

One loop for SePPO and its baselines (sft, dpo), so comparisons share all other code. Per update:
for each micro-batch, one policy forward on 2B latents (winners and reference samples, the same
noise and timestep) and one reference forward on the same 2B (forward.py), then the loss of
losses.py. Resumable: state (weights, optimizer, the logged history and the per-position anchor
records) is saved atomically every `checkpoint_every` updates, and noise/timesteps/data are
functions of (seed, round, update), so a resumed run ends with the same weights, summary and log.

Reading order: run_train (the loop) -> _Run (what a round loads) -> _Batches (its data) -> _step.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import TrainConfig
from ..data.cache import LatentCache
from ..io_utils import atomic_dir, atomic_path, write_json
from . import oracle
from .forward import (MicroBatch, anchor_draws, check_prediction_type, compute_loss, positions_of,
                      resolve_mixed_precision)
from ..layout import Layout
from .plan import resolve_frame_corr, resolve_noise_offset, round_noise
from .reference_samples import (check_refsamples_identity, load_preference_gap, load_reference_errors,
                                load_refsamples, round_plan)

STATE_VERSION = 4  # 4: history rows keep their key order (the DVCLive summary's key order)
# per-position values gathered every micro-batch for the round's anchor diagnostics (oracle.POSITION_COLUMNS)
RECORD_KEYS = ("s", "gap", "anchor_gap", "anchor_se", "d_w", "d_r", "e_pol_w", "e_ref_w", "logit")


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses; the last good state is kept on disk."""


def lr_schedule(cfg: TrainConfig, optimizer):
    """Warm-up then constant or cosine over the whole run (all rounds), as a diffusers scheduler."""
    from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if cfg.lr_schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, cfg.lr_warmup)
    return get_cosine_schedule_with_warmup(optimizer, cfg.lr_warmup, cfg.rounds * cfg.updates_per_round)


def lr_factor_fn(cfg: TrainConfig):
    """update of the run (all rounds) -> lr multiplier, from the scheduler above; looked up by the
    global update number, so a round or a resumed run starts at the right point."""
    return lr_schedule(cfg, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)).lr_lambdas[0]


def _config_hash(cfg: TrainConfig, k: int, reference: str) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([cfg.model_dump(), k, reference], sort_keys=True).encode()).hexdigest()[:16]


def _load_unet(folder: Path):
    from ..models.pipeline import load_unet

    return load_unet(folder)


def _freeze_for(unet, trainable: str) -> None:
    """``motion``: only the temporal modules of a UNetMotionModel train (AnimateDiff's fine-tune)."""
    if trainable == "all":
        return
    if not hasattr(unet, "freeze_unet2d_params"):
        raise ValueError(f"video.trainable={trainable!r} needs a motion UNet (a video checkpoint), got "
                         f"{type(unet).__name__}")
    unet.freeze_unet2d_params()


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
    """Latents, text embeddings and noise of each micro-batch of a round (global, then split per process)."""

    def __init__(self, cfg: TrainConfig, k: int, cache_dir: Path, layout: Layout, processes: int,
                 selection: dict, noise_offset: float, frame_corr: float = 0.0):
        self.cfg, self.k, self.noise_offset, self.frame_corr = cfg, k, noise_offset, frame_corr
        self.winners = LatentCache(cache_dir)
        self.second = None
        if cfg.loss == "dpo":
            self.losers = LatentCache(cache_dir, "losers")
            rows = round_plan(cfg, k, self.losers, processes)
            by_uid = {u: i for i, u in enumerate(self.winners.index.winner_uid)}
            self.second_rows = rows
            self.rows = np.array([by_uid[u] for u in self.losers.index.winner_uid.to_numpy()[rows]])
        else:
            self.rows = round_plan(cfg, k, self.winners, processes)
            if cfg.loss == "seppo":
                folder = layout.refsamples(k)
                check_refsamples_identity(folder, selection, layout.selection(k))
                lat, ref_rows = load_refsamples(folder)
                if not np.array_equal(ref_rows, self.rows):
                    raise RuntimeError(
                        f"{folder} was generated for other winners than this round's "
                        "(params changed since?): rerun the refsamples stage")
                self.second = lat
        self.preference_gap = None
        if cfg.loss == "seppo":
            gap = load_preference_gap(layout.refsamples(k), cfg, len(self.rows))
            self.preference_gap = None if gap is None else torch.from_numpy(gap.copy())
        self.e_ref = None
        if cfg.reference_errors == "precomputed":
            self.e_ref = load_reference_errors(layout.refsamples(k), len(self.rows), cfg.anchor_draws)
        self.global_mb = cfg.micro_batch * processes
        self.latent_shape = tuple(self.winners.latents([0]).shape[1:])

    def get(self, update: int, micro: int, process: int, T: int) -> tuple[np.ndarray, MicroBatch]:
        cfg = self.cfg
        pos = positions_of(update, micro, cfg.grad_accum, self.global_mb, cfg.micro_batch, process)
        rows = self.rows[pos]
        if cfg.loss == "seppo":
            z_r = self.second[pos].float()
        elif cfg.loss == "dpo":
            z_r = self.losers.latents(self.second_rows[pos])
        else:
            z_r = None
        # the same global draw whatever the number of processes; this process takes its slice
        sl = slice(process * cfg.micro_batch, (process + 1) * cfg.micro_batch)
        noise, t = round_noise(cfg.seed, self.k, update, micro, self.global_mb, self.latent_shape, T,
                               self.noise_offset, self.frame_corr)
        batch = MicroBatch(self.winners.latents(rows), z_r, self.winners.conditioning(rows), noise[sl], t[sl])
        if cfg.loss == "seppo" and cfg.anchor_draws:
            a_noise, a_t = anchor_draws(cfg.seed, self.k, update, micro, self.global_mb, cfg.anchor_draws,
                                        self.latent_shape, T, self.noise_offset, self.frame_corr)
            batch.anchor_noise, batch.anchor_t = a_noise[sl], a_t[sl]
        if self.preference_gap is not None:
            batch.preference_gap = self.preference_gap[pos]
        if self.e_ref is not None:
            batch.e_ref = (self.e_ref["e_ref_w"][pos], self.e_ref["e_ref_r"][pos])
            if "e_ref_anchor" in self.e_ref:
                batch.e_ref_anchor = self.e_ref["e_ref_anchor"][pos]
        return pos, batch


@dataclass
class _Progress:
    """What a round has done so far; saved with the resumable state, so a resumed round reports
    the same summary and log as an uninterrupted one."""

    n_positions: int
    update: int = 0
    bad: int = 0
    history: list[dict] = field(default_factory=list)  # one row per update, no wall-clock values
    records: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if not self.records:
            self.records = {key: np.full(self.n_positions, np.nan, dtype=np.float64) for key in RECORD_KEYS}

    def save(self, path: Path, trainable: dict, optimizer, chash: str) -> None:
        from safetensors.torch import save_file

        with atomic_dir(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()},
                      str(tmp / "weights.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            np.savez(tmp / "records.npz", **self.records)
            # not write_json: its sorted keys would reorder each history row, and the replayed DVCLive
            # summary (keys in first-logged order) would differ from the uninterrupted run's
            meta = {"version": STATE_VERSION, "update": self.update, "bad_steps": self.bad, "config": chash,
                    "history": self.history}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path, n_positions: int, trainable: dict, optimizer, chash: str, say) -> "_Progress":
        """The saved progress if it belongs to this configuration, else a fresh start."""
        meta_path = path / "meta.json"
        if not meta_path.exists():
            return cls(n_positions)
        meta = json.loads(meta_path.read_text())
        if meta.get("config") != chash or meta.get("version") != STATE_VERSION:
            say(f"ignoring stale state in {path} (params or format changed)")
            return cls(n_positions)
        from safetensors.torch import load_file

        weights = load_file(str(path / "weights.safetensors"))
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(weights[n])
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        with np.load(path / "records.npz") as rec:
            records = {k: rec[k].copy() for k in RECORD_KEYS}
        say(f"resuming from update {meta['update']} ({path})")
        return cls(n_positions, meta["update"], meta["bad_steps"], meta["history"], records)


def _trainable_state(unet) -> dict:
    return {n: p for n, p in unet.named_parameters() if p.requires_grad}


class _Run:
    """Everything a round loads before its first update."""

    def __init__(self, cfg: TrainConfig, k: int, layout: Layout, cache_dir: Path, trainable: str = "all"):
        from accelerate import Accelerator
        from diffusers import DDPMScheduler

        self.cfg, self.k, self.layout = cfg, k, layout
        self.selection = json.loads(layout.selection(k).read_text())
        self.acc = acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
        if acc.num_processes != cfg.processes:
            raise ValueError(f"launched with {acc.num_processes} processes but train.processes={cfg.processes}: "
                             "the round's winners and reference samples are sized by train.processes; make them agree")
        self.policy_dir = layout.checkpoint(k - 1)
        self.ref_dir = Path(self.selection["reference"])
        self.scheduler = DDPMScheduler.from_pretrained(self.policy_dir, subfolder="scheduler")
        check_prediction_type(self.scheduler, str(self.policy_dir / "scheduler"))
        self.noise_offset = resolve_noise_offset(cfg, layout.checkpoint(0))
        self.frame_corr = resolve_frame_corr(layout.checkpoint(0))

        torch.manual_seed(cfg.seed)
        policy = _load_unet(self.policy_dir)
        _freeze_for(policy, trainable)
        if cfg.lora_rank:
            if trainable != "all":
                raise ValueError("train.lora_rank > 0 with video.trainable=motion: pick one way of limiting what trains")
            _add_lora(policy, cfg)
        if cfg.gradient_checkpointing:
            policy.enable_gradient_checkpointing()
        if cfg.channels_last:
            policy.to(memory_format=torch.channels_last)
        policy.train()
        self.reference = self._reference() if cfg.loss != "sft" and cfg.reference_errors == "in_step" else None
        self.optimizer = _optimizer([p for p in policy.parameters() if p.requires_grad], cfg)
        prev_opt = self.policy_dir / "seppo_trainer" / "optimizer.pt"
        if prev_opt.exists() and not cfg.lora_rank:  # one continuous run across rounds
            self.optimizer.load_state_dict(torch.load(prev_opt, weights_only=True))
        self.lr_factor = lr_factor_fn(cfg)
        # what trains is part of the state's identity (a resumed motion-only round must not load an all-weights state)
        self.chash = _config_hash(cfg, k, str(self.ref_dir) + ("" if trainable == "all" else f"|{trainable}"))
        self.batches = _Batches(cfg, k, cache_dir, layout, acc.num_processes, self.selection, self.noise_offset,
                               self.frame_corr)
        self.progress = _Progress.load(layout.state(k), len(self.batches.rows), _trainable_state(policy),
                                       self.optimizer, self.chash, lambda m: acc.print(f"round {k}: {m}"))
        self.policy, self.optimizer = acc.prepare(policy, self.optimizer)
        if cfg.compile:
            acc.unwrap_model(self.policy).compile()
        self.oracle = oracle.load(layout.refsamples(k)) if cfg.loss == "seppo" else None

    def _reference(self):
        # fp32 weights under the policy's autocast: the same arithmetic as the policy, so identical
        # weights give identical errors (s = 0), not half-precision noise (docs/scale.md for memory)
        reference = _load_unet(self.ref_dir).eval().requires_grad_(False)
        if self.cfg.channels_last:
            reference.to(memory_format=torch.channels_last)
        if self.cfg.offload_reference:
            from accelerate import cpu_offload

            cpu_offload(reference, execution_device=self.acc.device)
            return reference
        return reference.to(self.acc.device)


def _step(run: _Run, update: int) -> tuple[dict, bool]:
    """One optimizer update: accumulate micro-batches, reduce across processes, step or skip."""
    cfg, acc, progress = run.cfg, run.acc, run.progress
    T = run.scheduler.config.num_train_timesteps
    sums, finite = {}, True
    for micro in range(cfg.grad_accum):
        pos, batch = run.batches.get(update, micro, acc.process_index, T)
        sync = contextlib.nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(run.policy)
        with sync, acc.autocast():
            loss, stats = compute_loss(cfg, run.policy, run.reference, run.scheduler, batch.to(acc.device))
            finite = finite and bool(torch.isfinite(loss))
            if finite:
                acc.backward(loss / cfg.grad_accum)
        for key, v in {"loss": float(loss.detach()), **stats.as_dict()}.items():
            sums[key] = sums.get(key, 0.0) + v / cfg.grad_accum
        _record(run, pos, stats.per_sample)
    if acc.num_processes > 1:  # every process skips together; logged stats are means over all processes
        flag = torch.tensor(1.0 if finite else 0.0, device=acc.device)
        finite = bool(acc.reduce(flag, "min").item())
        keys = sorted(sums)
        vals = acc.reduce(torch.tensor([sums[k] for k in keys], device=acc.device, dtype=torch.float64), "mean")
        sums = dict(zip(keys, vals.tolist()))
    lr_now = cfg.lr * run.lr_factor((run.k - 1) * cfg.updates_per_round + update)
    if finite:
        progress.bad = 0
        for group in run.optimizer.param_groups:
            group["lr"] = lr_now
        gnorm = float(acc.clip_grad_norm_(run.policy.parameters(), cfg.max_grad_norm))
        run.optimizer.step()
    else:
        progress.bad += 1
        gnorm = float("nan")
        acc.print(f"round {run.k} update {update}: non-finite loss, step skipped ({progress.bad} in a row)")
    run.optimizer.zero_grad(set_to_none=True)
    row = {**sums, "lr": lr_now, "grad_norm": gnorm, "skipped": 0.0 if finite else 1.0}
    if run.oracle is not None:
        span = cfg.grad_accum * run.batches.global_mb
        row.update(oracle.batch_metrics(run.oracle, progress.records, np.arange(update * span, (update + 1) * span)))
    return row, finite


def _record(run: _Run, pos: np.ndarray, per_sample: dict) -> None:
    """Keep each position's anchor values (gathered from every process in position order)."""
    if not per_sample:
        return
    n = len(pos)
    local = torch.stack([per_sample.get(k, torch.full((n,), float("nan"), device=per_sample["d_w"].device))
                         .float() for k in RECORD_KEYS], 1)
    both = torch.cat([torch.as_tensor(pos, device=local.device, dtype=torch.float32)[:, None], local], 1)
    gathered = run.acc.gather(both).cpu().double().numpy()
    idx = gathered[:, 0].astype(np.int64)
    for j, key in enumerate(RECORD_KEYS):
        run.progress.records[key][idx] = gathered[:, j + 1]


def _open_live(run: _Run):
    """DVCLive for this round; after a resume the saved history is logged again, because DVC removes
    the stage's outputs (the log included) before re-running it."""
    from dvclive import Live

    live_dir = run.layout.live(run.k)
    shutil.rmtree(live_dir, ignore_errors=True)
    live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    for update, row in enumerate(run.progress.history):  # one row per update, from update 0
        if update % run.cfg.log_every == 0:
            _log_row(live, update, row)
    return live


def _log_row(live, update: int, row: dict) -> None:
    live.step = update  # the update number, also when log_every > 1
    for key, v in row.items():
        if v is not None and math.isfinite(v):
            live.log_metric(f"train/{key}", v)
    live.next_step()


def run_train(cfg: TrainConfig, k: int, layout: Layout, cache_dir: Path, trainable: str = "all") -> dict:
    """Train round k and save theta_k (a diffusers folder); returns the round's summary. ``trainable``
    (video.trainable): ``all`` weights, or ``motion`` modules only (a video checkpoint's UNetMotionModel)."""
    from tqdm.auto import tqdm

    run = _Run(cfg, k, layout, cache_dir, trainable)
    acc, progress = run.acc, run.progress
    acc.print(f"round {k}: loss={cfg.loss} reference={run.ref_dir} policy={run.policy_dir} "
              f"effective batch = {acc.num_processes} processes x {cfg.micro_batch} x {cfg.grad_accum} "
              f"accumulation = {acc.num_processes * cfg.micro_batch * cfg.grad_accum}; "
              f"mixed precision {acc.mixed_precision}; noise offset {run.noise_offset}")
    live = _open_live(run) if acc.is_main_process else None
    t_start, resumed_at = time.perf_counter(), progress.update
    bar = tqdm(range(progress.update, cfg.updates_per_round), desc=f"round {k}", disable=not acc.is_main_process,
               initial=progress.update, total=cfg.updates_per_round)
    for update in bar:
        row, finite = _step(run, update)
        progress.history.append(row)
        progress.update = update + 1
        if live is not None and update % cfg.log_every == 0:
            _log_row(live, update, row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", flip=f"{row['flip_rate']:.2f}")
        if progress.bad >= cfg.max_bad_steps:
            raise TrainingDiverged(
                f"round {k}: {progress.bad} consecutive non-finite losses at update {update} "
                f"(train.max_bad_steps={cfg.max_bad_steps}); last good state: {layout.state(k)}. "
                "Lower train.lr or train.beta, or check the cache for NaNs.")
        if (acc.is_main_process and progress.update % cfg.checkpoint_every == 0 and finite
                and progress.update < cfg.updates_per_round):
            progress.save(layout.state(k), _trainable_state(acc.unwrap_model(run.policy)), run.optimizer, run.chash)
            acc.print(f"round {k}: state saved at update {progress.update}", flush=True)
    if live is not None:
        live.end()
    acc.wait_for_everyone()
    summary = _summary(run)
    if acc.is_main_process:
        _save_checkpoint(acc.unwrap_model(run.policy), run.optimizer, cfg, run.policy_dir, layout.checkpoint(k),
                         summary)
        _write_positions(run)  # every loss: the stage's outputs must not depend on a -S override of train.loss
        write_json(layout.metrics(k), summary)
        write_json(layout.timing(k), _timing(run, time.perf_counter() - t_start, resumed_at))
        shutil.rmtree(layout.state(k), ignore_errors=True)
    acc.wait_for_everyone()
    return summary


def _summary(run: _Run) -> dict:
    """The round's record: deterministic in the params (no wall-clock values, the same after a resume)."""
    cfg, history = run.cfg, run.progress.history
    summary = {"round": run.k, "loss_type": cfg.loss, "reference": str(run.ref_dir),
               "policy_init": str(run.policy_dir), "reference_errors": cfg.reference_errors,
               "criterion": cfg.criterion if cfg.loss == "seppo" else None, "anchor_draws": cfg.anchor_draws,
               "noise_offset": run.noise_offset, "updates": cfg.updates_per_round,
               "effective_batch": run.acc.num_processes * cfg.micro_batch * cfg.grad_accum}
    for key in ("loss", "flip_rate", "implicit_acc", "d_w", "d_r"):
        vals = [h[key] for h in history if h.get(key) is not None and math.isfinite(h[key])]
        summary[f"mean_{key}"] = float(np.mean(vals)) if vals else None
    if cfg.loss != "sft":
        summary.update(loss_calibration(run.progress.records, history, cfg.max_grad_norm,
                                        cfg.grad_accum * run.batches.global_mb))
    if cfg.loss == "seppo":
        summary.update(oracle.round_diagnostics(run.progress.records, run.oracle))
    return summary


SATURATED_LOGIT = 5.0  # |logit| above this: sigmoid within 0.7% of 0 or 1, the sample's gradient ~ vanishes


def loss_calibration(records: dict, history: list[dict], max_grad_norm: float, per_update: int) -> dict:
    """Is beta calibrated to this model's errors? The logit -0.5 beta (D_w - s D_r) per position, its median
    magnitude at the round's first update and over the round, the share of saturated samples, and how many
    updates the gradient clip cut (grad_norm > max_grad_norm)."""
    logit = records["logit"]
    done = np.isfinite(logit)
    first = done[:per_update]
    norms = np.array([h["grad_norm"] for h in history if math.isfinite(h.get("grad_norm", float("nan")))])
    return {
        "logit_abs_median_first_update": float(np.median(np.abs(logit[:per_update][first]))) if first.any() else None,
        "logit_abs_median": float(np.median(np.abs(logit[done]))) if done.any() else None,
        "share_saturated": float(np.mean(np.abs(logit[done]) > SATURATED_LOGIT)) if done.any() else None,
        "grad_norm_median": float(np.median(norms)) if len(norms) else None,
        "share_clipped": float(np.mean(norms > max_grad_norm)) if len(norms) else None,
    }


def _write_positions(run: _Run) -> None:
    """The round's per-position records (runs/<prefix>round_k/positions.parquet, a DVC output): what the anchor
    saw and decided at each position, with the truth where the world has one (oracle.position_table). An SFT
    round has no pair: its rows say which winner was trained on when, the pair's columns are NaN."""
    from .reference_samples import REWARD_FILE

    b = run.batches
    cache = b.winners
    captions = [cache.captions[c] for c in cache.caption_id[b.rows]]
    updates = np.arange(len(b.rows)) // (run.cfg.grad_accum * b.global_mb)
    reward_path = run.layout.refsamples(run.k) / REWARD_FILE
    rewards = pd.read_parquet(reward_path) if run.cfg.loss == "seppo" and reward_path.exists() else None
    table = oracle.position_table(run.progress.records, b.rows, captions, updates, run.oracle, rewards)
    table.insert(1, "criterion", run.cfg.criterion if run.cfg.loss == "seppo" else run.cfg.loss)
    with atomic_path(run.layout.positions(run.k)) as tmp:
        table.to_parquet(tmp, index=False)


def _timing(run: _Run, seconds: float, resumed_at: int) -> dict:
    """Wall-clock figures of this process's run: a file nothing depends on."""
    import resource

    cfg = run.cfg
    done = cfg.updates_per_round - resumed_at
    pairs = done * run.acc.num_processes * cfg.micro_batch * cfg.grad_accum
    return {"round": run.k, "updates_run": done, "resumed_at_update": resumed_at,
            "wall_seconds": round(seconds, 2),
            "pairs_per_wall_second": round(pairs / max(seconds, 1e-9), 2),
            # peak resident memory of this process (Linux: KiB), read after the checkpoint was saved;
            # the bank stays on disk, so it must not grow with the round number
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _save_checkpoint(policy, optimizer, cfg: TrainConfig, init_dir: Path, out: Path, summary: dict) -> None:
    """theta_k as a full diffusers pipeline folder: the policy UNet + theta_{k-1}'s other parts. A video
    checkpoint (AnimateDiffPipeline) also gets its motion modules as a MotionAdapter folder, so the round
    loads as AnimateDiff = any SD1.5 image model + models/<round>/motion_adapter."""
    motion = hasattr(policy, "save_motion_modules")
    with atomic_dir(out) as tmp:
        for item in init_dir.iterdir():
            if item.name in ("unet", "seppo_trainer", "seppo_round.json") or (motion and item.name == "motion_adapter"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        unet = policy
        if cfg.lora_rank:
            unet.fuse_lora()
            unet.unload_lora()
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        if motion:
            unet.save_motion_modules(str(tmp / "motion_adapter"), safe_serialization=True)
        (tmp / "seppo_trainer").mkdir()
        if not cfg.lora_rank:
            torch.save(optimizer.state_dict(), tmp / "seppo_trainer" / "optimizer.pt")
        write_json(tmp / "seppo_round.json", summary)
