"""The embedded AnimateDiff: a MotionAdapter pretrained on the video world's web clips, the image model frozen.

AnimateDiff's recipe at toy scale: the embedded image model (models/base: VAE, text encoder, UNet) stays
as it is; temporal transformers (a diffusers MotionAdapter sized from the UNet's config) are inserted
after each spatial block (UNetMotionModel.from_unet2d) and trained alone with the image model's own
objective (epsilon prediction, its noise offset) on clip latents (B, C, F, h, w).

The output (models/video_base, theta_0 of every video arm) is a whole AnimateDiffPipeline folder (vae,
text encoder, tokenizer, UNetMotionModel, scheduler) plus `motion_adapter/`, the motion modules as a diffusers
MotionAdapter: `load_video_pipeline(models/base, models/video_base/motion_adapter)` is AnimateDiff over the
embedded model exactly as with SD1.5 and a released adapter. With `video_base.source` set to an adapter (a Hub
id with its revision, or a folder), nothing trains: the adapter is composed with models/base the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..config import VideoBaseConfig
from ..io_utils import atomic_dir, write_json
from .pretrain import encode_latents, encode_text
from .recipe import frame_correlated, recipe_noise_offset


def _base_parts(base_dir: Path):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(base_dir, subfolder="vae", use_safetensors=True).eval()
    text = CLIPTextModel.from_pretrained(base_dir, subfolder="text_encoder", use_safetensors=True).eval()
    tok = CLIPTokenizer.from_pretrained(base_dir, subfolder="tokenizer")
    unet = UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet", use_safetensors=True)
    sched = DDPMScheduler.from_pretrained(base_dir, subfolder="scheduler")
    return vae, text, tok, unet, sched


def clip_latents(vae, clips: np.ndarray):
    """(N, F, H, W, 3) uint8 -> scaled VAE posterior means (N, C, F, h, w), frame by frame."""
    n, f = clips.shape[:2]
    z = encode_latents(vae, clips.reshape(n * f, *clips.shape[2:])) * vae.config.scaling_factor
    return z.reshape(n, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


def pretrain_loss(pred, noise, alpha_bar, snr_gamma: float):
    """Epsilon MSE over channels, frames and pixels; with ``snr_gamma`` > 0 each clip weighted by
    min(SNR, gamma) / SNR (Min-SNR-gamma, Hang et al. 2023), SNR = alpha_bar / (1 - alpha_bar) at its timestep."""
    import torch

    if snr_gamma <= 0:
        return torch.mean((pred - noise) ** 2)
    snr = alpha_bar / (1.0 - alpha_bar)
    per_clip = torch.mean((pred - noise) ** 2, dim=tuple(range(1, pred.ndim)))
    return torch.mean(per_clip * torch.clamp(snr, max=snr_gamma) / snr)


def pretrain_motion_adapter(cfg: VideoBaseConfig, base_dir: Path, web_dir: Path, out_dir: Path) -> dict:
    """Train the motion modules on ``web_dir`` (clips.npy, captions.parquet); write a MotionAdapter folder."""
    import pandas as pd
    import torch
    from diffusers import MotionAdapter, UNetMotionModel
    from diffusers.optimization import get_cosine_schedule_with_warmup

    from ..progress import progress

    base_dir, web_dir = Path(base_dir), Path(web_dir)
    clips = np.load(web_dir / "clips.npy")
    captions = pd.read_parquet(web_dir / "captions.parquet")["caption"].tolist()
    if len(captions) != len(clips):
        raise ValueError(f"{web_dir}: {len(clips)} clips but {len(captions)} captions")
    torch.manual_seed(cfg.seed)
    vae, text, tok, unet, sched = _base_parts(base_dir)
    latents = clip_latents(vae, clips)
    cond = encode_text(tok, text, captions + [""])  # the last row: the empty caption
    uc = unet.config
    adapter = MotionAdapter(block_out_channels=tuple(uc.block_out_channels),
                            motion_layers_per_block=uc.layers_per_block, motion_norm_num_groups=uc.norm_num_groups,
                            motion_num_attention_heads=cfg.heads, motion_max_seq_length=max(32, clips.shape[1]))
    model = UNetMotionModel.from_unet2d(unet, adapter)
    model.freeze_unet2d_params()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    motion_parameters = int(sum(p.numel() for p in params))
    groups = [{"params": params, "lr": cfg.lr}]
    if cfg.spatial_lr > 0:  # the image layers adapt to clip captions and frames too (a domain adapter, in effect)
        spatial = [p for n, p in model.named_parameters() if "motion_modules" not in n]
        for p in spatial:
            p.requires_grad_(True)
        groups.append({"params": spatial, "lr": cfg.spatial_lr})
        params = params + spatial
    ids = None
    if cfg.text_lr > 0:  # the text encoder learns the change phrases (", moving right") the image captions never had
        ids = tok(captions + [""], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        text.train().requires_grad_(True)
        groups.append({"params": list(text.parameters()), "lr": cfg.text_lr})
        params = params + list(text.parameters())
    opt = torch.optim.AdamW(groups, weight_decay=1e-2)
    lr_sched = get_cosine_schedule_with_warmup(opt, max(1, cfg.steps // 10), cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    offset = recipe_noise_offset(base_dir)
    frames = latents.shape[2]
    ema = [p.detach().clone() for p in params] if cfg.ema_decay > 0 else None
    alphas = sched.alphas_cumprod
    log, bar = [], progress(cfg.steps, "video-base", unit="step")
    for step in range(cfg.steps):
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=gen)
        z0 = latents[idx]
        c = idx.clone()
        c[torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout] = len(cond) - 1
        noise = torch.randn(z0.shape, generator=gen)
        if offset > 0:  # the image model's recipe: one constant per sample and channel (over frames too)
            noise = noise + offset * torch.randn((len(z0), z0.shape[1], 1, 1, 1), generator=gen)
        noise = frame_correlated(noise, cfg.frame_noise_correlation, gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        enc = cond[c] if ids is None else text(ids[c])[0]
        pred = model(sched.add_noise(z0, noise, t), t, encoder_hidden_states=enc.repeat_interleave(frames, 0)).sample
        loss = pretrain_loss(pred, noise, alphas[t], cfg.snr_gamma)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - min(cfg.ema_decay, (1 + step) / (10 + step)))
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": round(loss.item(), 6)})
        bar.update(1)
    bar.close()
    if ema is not None:  # the average is what is saved (and sampled): the last step's weights are dropped
        with torch.no_grad():
            torch._foreach_copy_(params, ema)
    with atomic_dir(out_dir) as tmp:
        model.save_motion_modules(str(tmp / "motion_adapter"), safe_serialization=True)
        _write_animatediff(base_dir, tmp / "motion_adapter", tmp, name=str(Path(out_dir) / "motion_adapter"))
        if cfg.spatial_lr > 0:  # theta_0's UNet is the trained one: its image layers are no longer models/base's
            shutil.rmtree(tmp / "unet")
            model.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        if ids is not None:  # theta_0's text encoder is the trained one (the video cache and every arm read it)
            shutil.rmtree(tmp / "text_encoder")
            text.eval().save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
        write_json(tmp / "seppo_provenance.json", _provenance(base_dir, offset, cfg.frame_noise_correlation, {
            "web": str(web_dir), "video_base": cfg.model_dump()}))
    return {"clips": len(clips), "frames": int(frames), "steps": cfg.steps, "noise_offset": offset,
            "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
            "motion_parameters": motion_parameters, "trained_parameters": int(sum(p.numel() for p in params)),
            "log": log}


def _provenance(base_dir: Path, offset: float, corr: float, extra: dict) -> dict:
    """The record recipe_noise_offset / recipe_frame_correlation read: fine-tuning and sampling a video arm follow
    the image model's noise offset and the adapter's frame noise correlation (0, the key left out, for independent
    frames: the record of a run without it stays byte for byte what it was)."""
    import json

    base_record = Path(base_dir) / "seppo_provenance.json"
    source = json.loads(base_record.read_text()).get("params", {}).get("source") if base_record.exists() else None
    params = {"source": source, "noise_offset": offset, **({"frame_noise_correlation": corr} if corr else {})}
    return {"base": str(base_dir), "params": params, **extra}


def _write_animatediff(base_dir: Path, adapter_dir: Path, out: Path, name: str) -> None:
    """AnimateDiff = the image model at ``base_dir`` + the adapter, saved as one pipeline folder in ``out``.

    ``name`` is what the adapter's config records as ``_name_or_path``: the adapter is read back from the
    atomic write's temporary folder, whose random name would otherwise land in config.json and change the
    folder's hash on every run (same weights, different bytes).
    """
    from .video_pipeline import load_video_pipeline

    pipe = load_video_pipeline(base_dir, adapter_dir)
    pipe.motion_adapter.register_to_config(_name_or_path=name)
    pipe.save_pretrained(str(out), safe_serialization=True)


def run_video_base(cfg: VideoBaseConfig, base_dir: Path, web_dir: Path, out_dir: Path) -> dict:
    """theta_0 of the video arms: the embedded adapter pretrained here, or ``cfg.source`` composed with models/base."""
    if cfg.source == "embedded":
        return pretrain_motion_adapter(cfg, base_dir, web_dir, out_dir)
    from .video_pipeline import load_motion_adapter

    with atomic_dir(out_dir) as tmp:
        load_motion_adapter(cfg.source, cfg.revision).save_pretrained(str(tmp / "motion_adapter"),
                                                                      safe_serialization=True)
        _write_animatediff(base_dir, tmp / "motion_adapter", tmp, name=cfg.source)
        write_json(tmp / "seppo_provenance.json", _provenance(base_dir, recipe_noise_offset(base_dir), 0.0, {
            "motion_adapter": cfg.source, "revision": cfg.revision}))
    return {"source": cfg.source, "revision": cfg.revision, "trained": False}
