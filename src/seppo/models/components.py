"""The tiny Stable-Diffusion-architecture components of the embedded base model.

Same classes as SD1.5 (CLIPTextModel, AutoencoderKL, UNet2DConditionModel, DDPM/DDIM schedulers
with SD's scaled-linear betas), only smaller, so that every code path that serves SD1.5 serves it.
"""

from __future__ import annotations

from typing import Any

# SD1.5's noise schedule.
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def _groups(channels: list[int]) -> int:
    """Largest GroupNorm group count (<= 32) dividing every channel width."""
    for g in (32, 16, 8, 4, 2, 1):
        if all(c % g == 0 for c in channels):
            return g
    return 1


def text_encoder(hidden: int, layers: int, max_tokens: int, seed: int):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 16),
        max_position_embeddings=max_tokens,
        projection_dim=hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def vae(channels: list[int], image_size: int, seed: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=_groups(channels),
        sample_size=image_size,
    )


def unet(channels: list[int], layers_per_block: int, latent_size: int, cross_dim: int, seed: int, heads: int = 8):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    n = len(channels)
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cross_dim,
        attention_head_dim=heads,  # diffusers' legacy name: UNet2DConditionModel uses it as the head count
        norm_num_groups=_groups(channels),
    )


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "set_alpha_to_one" and k != "steps_offset"})


def sampling_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)
