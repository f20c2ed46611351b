"""Pretraining the embedded base model theta_0 on Shapeland's web corpus.

Two phases, both seeded: the VAE learns to reconstruct the corpus (MSE + a small KL), then the
UNet learns epsilon prediction on the frozen VAE's latents with a frozen, randomly initialised
CLIP text encoder (measured: freezing it works better than training it jointly at this scale),
dropping captions at ``caption_dropout`` so that classifier-free guidance works. Min-SNR loss
weighting and an EMA of the UNet weights make the few CPU minutes count; both are params.

No horizontal flips: "on the left" must stay on the left.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import BaseModelConfig
from ..io_utils import atomic_dir
from ..optim import adamw
from . import components
from .tokenizer import build_clip_tokenizer, write_clip_vocab

LOG_EVERY = 50


def _to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(cfg: BaseModelConfig, images: np.ndarray, log: list[dict]):
    import torch
    from tqdm.auto import tqdm

    vae = components.vae(cfg.vae_channels, images.shape[1], cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = adamw(vae.parameters(), cfg.vae_lr, 0.0, cfg.adamw_impl)
    for step in tqdm(range(cfg.vae_steps), desc="vae", mininterval=5):
        idx = torch.randint(len(images), (cfg.vae_batch_size,), generator=gen).numpy()
        x = _to_tensor(images[np.sort(idx)])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        mse = torch.mean((recon - x) ** 2)
        loss = mse + cfg.vae_kl_weight * post.kl().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % LOG_EVERY == 0 or step == cfg.vae_steps - 1:
            log.append({"phase": "vae", "step": step, "loss": loss.item(), "mse": mse.item()})
    vae.eval().requires_grad_(False)
    return vae


def encode_latents(vae, images: np.ndarray, batch: int = 500):
    """Posterior means of every image (deterministic), unscaled."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(vae.encode(_to_tensor(images[i : i + batch])).latent_dist.mean)
    return torch.cat(out)


def encode_text(tokenizer, text_encoder, captions: list[str], batch: int = 512):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(captions), batch):
            ids = tokenizer(
                captions[i : i + batch],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            out.append(text_encoder(ids)[0])
    return torch.cat(out)


def train_unet(cfg: BaseModelConfig, latents, cond, caption_index: np.ndarray, log: list[dict]):
    """Epsilon-prediction training; ``cond[-1]`` is the empty caption's embedding."""
    import torch
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    unet = components.unet(
        cfg.unet_channels, cfg.unet_layers_per_block, latents.shape[-1], cfg.text_hidden, cfg.seed,
        cfg.unet_attention_heads,
    )
    sched = components.train_scheduler()
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    opt = adamw(unet.parameters(), cfg.unet_lr, 1e-2, cfg.adamw_impl)
    warmup = min(100, cfg.unet_steps // 10)
    lr_sched = get_cosine_schedule_with_warmup(opt, warmup, cfg.unet_steps)
    empty = len(cond) - 1
    cap_idx = torch.from_numpy(caption_index)
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params] if cfg.unet_ema_decay > 0 else None
    alphas = sched.alphas_cumprod
    for step in tqdm(range(cfg.unet_steps), desc="unet", mininterval=5):
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=gen)
        z0 = latents[idx]
        c_idx = cap_idx[idx].clone()
        c_idx[torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout] = empty
        noise = torch.randn(z0.shape, generator=gen)
        if cfg.noise_offset > 0:
            # Offset noise: lets the model move an image's mean (here: its background colour),
            # which plain epsilon prediction learns very slowly at high noise levels.
            noise = noise + cfg.noise_offset * torch.randn((len(z0), z0.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        zt = sched.add_noise(z0, noise, t)
        pred = unet(zt, t, cond[c_idx]).sample
        per_sample = torch.mean((pred - noise) ** 2, dim=(1, 2, 3))
        if cfg.snr_gamma > 0:
            # Min-SNR-gamma weighting (Hang et al. 2023) for epsilon prediction.
            snr = alphas[t] / (1.0 - alphas[t])
            per_sample = per_sample * torch.clamp(snr, max=cfg.snr_gamma) / snr
        loss = per_sample.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            decay = min(cfg.unet_ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                # one call instead of a Python loop over ~300 tensors (bitwise the same as per-tensor lerp_)
                torch._foreach_lerp_(ema, params, 1.0 - decay)
        if step % LOG_EVERY == 0 or step == cfg.unet_steps - 1:
            log.append({"phase": "unet", "step": step, "loss": loss.item(), "lr": lr_sched.get_last_lr()[0]})
    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema, unet.parameters()):
                p.copy_(e)
    unet.eval().requires_grad_(False)
    return unet


def pretrain_base_model(cfg: BaseModelConfig, web_dir: Path, out_dir: Path, timing: dict | None = None) -> dict:
    """Train theta_0 on the web corpus and save it as a diffusers StableDiffusionPipeline folder.

    The summary (also saved in the model's seppo_provenance.json) holds only what the seeds and
    params determine, so a re-run rewrites models/base byte for byte; wall-clock seconds go into
    ``timing`` (the stage writes them to reports/metrics/timing/base_model.json)."""
    import torch
    from diffusers import StableDiffusionPipeline

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    images = np.load(web_dir / "images.npy")
    captions = pd.read_parquet(web_dir / "captions.parquet")["caption"].tolist()
    log: list[dict] = []

    vae = train_vae(cfg, images, log)
    t_vae = time.perf_counter() - t0
    raw = encode_latents(vae, images)
    # As SD's 0.18215: scale latents to unit variance for the diffusion model.
    scaling = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = raw * scaling

    tok_dir = out_dir.parent / f".{out_dir.name}.tokenizer"
    tokenizer = build_clip_tokenizer(tok_dir, model_max_length=cfg.max_tokens)
    shutil.rmtree(tok_dir, ignore_errors=True)
    text_encoder = components.text_encoder(cfg.text_hidden, cfg.text_layers, cfg.max_tokens, cfg.seed)
    text_encoder.eval().requires_grad_(False)
    unique, caption_index = np.unique(np.array(captions, dtype=object), return_inverse=True)
    cond = encode_text(tokenizer, text_encoder, list(unique) + [""])

    unet = train_unet(cfg, latents, cond, caption_index.astype(np.int64), log)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=components.sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    summary = {
        "source": "embedded",
        "vae_final_mse": next(r["mse"] for r in reversed(log) if r["phase"] == "vae"),
        "unet_final_loss": next(r["loss"] for r in reversed(log) if r["phase"] == "unet"),
        "latent_scaling_factor": scaling,
        "web_images": len(images),
        "unique_captions": len(unique),
        "parameters": {
            "unet": sum(p.numel() for p in unet.parameters()),
            "vae": sum(p.numel() for p in vae.parameters()),
            "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
        },
    }
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        # transformers 5 writes only tokenizer.json; keep the 4.x-readable files too.
        write_clip_vocab(tmp / "tokenizer")
        (tmp / "seppo_provenance.json").write_text(
            json.dumps({"params": cfg.model_dump(), "summary": summary, "log": log}, indent=2) + "\n"
        )
    if timing is not None:
        timing.update(seconds_total=round(time.perf_counter() - t0, 1), seconds_vae=round(t_vae, 1))
    return summary
