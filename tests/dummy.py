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
