"""Tiny random components of the real SD architecture (as diffusers' get_dummy_components)."""

from __future__ import annotations

from pathlib import Path


def get_dummy_components(image_size: int = 32, seed: int = 0) -> dict:
    from seppo.models import components
    from seppo.models.tokenizer import build_clip_tokenizer
    import tempfile

    tok = build_clip_tokenizer(tempfile.mkdtemp(prefix="tok-"), model_max_length=16)
    vae = components.vae([8, 16, 16], image_size, seed)
    latent = image_size // 4
    return {
        "vae": vae,
        "text_encoder": components.text_encoder(32, 1, 16, seed),
        "tokenizer": tok,
        "unet": components.unet([16, 32], 1, latent, 32, seed),
        "scheduler": components.sampling_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def save_dummy_pipeline(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**get_dummy_components(image_size, seed))
    pipe.save_pretrained(out, safe_serialization=True)
    return Path(out)


def get_dummy_sdxl_components(image_size: int = 32, seed: int = 0) -> dict:
    """A tiny StableDiffusionXLPipeline: two CLIP text encoders (the second with a projection),
    pooled text embeddings and time ids in the UNet's added conditioning ("text_time")."""
    import tempfile

    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from seppo.models import components
    from seppo.models.tokenizer import build_clip_tokenizer

    base = get_dummy_components(image_size, seed)
    torch.manual_seed(seed + 1)
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, projection_dim=24, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407))
    torch.manual_seed(seed)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=image_size // 4, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + 24,  # time ids + pooled (te2 projection)
        cross_attention_dim=32 + 32, norm_num_groups=8)
    return {
        "vae": base["vae"], "text_encoder": base["text_encoder"], "tokenizer": base["tokenizer"],
        "text_encoder_2": te2, "tokenizer_2": build_clip_tokenizer(tempfile.mkdtemp(prefix="tok2-"), 16),
        "unet": unet, "scheduler": components.sampling_scheduler(),
    }


def save_dummy_sdxl_pipeline(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**get_dummy_sdxl_components(image_size, seed)).save_pretrained(out, safe_serialization=True)
    return Path(out)


def get_dummy_motion_unet(seed: int = 0, latent: int = 8, cross_dim: int = 32, max_frames: int = 16):
    """A tiny AnimateDiff UNet (UNetMotionModel = a 2-D SD UNet + a MotionAdapter's temporal modules)."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=latent, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, norm_num_groups=4)
    adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=4,
                            motion_num_attention_heads=2, motion_max_seq_length=max_frames)
    return UNetMotionModel.from_unet2d(unet, adapter)


def save_dummy_motion_adapter(out: Path, seed: int = 0, max_frames: int = 16) -> Path:
    """A tiny MotionAdapter matching get_dummy_components' UNet (channels 16, 32; one layer per block)."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=4,
                            motion_num_attention_heads=2, motion_max_seq_length=max_frames)
    adapter.save_pretrained(out, safe_serialization=True)
    return Path(out)
