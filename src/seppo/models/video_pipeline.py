"""AnimateDiff: a Stable Diffusion image model plus a motion adapter, loaded from folders or Hub ids, sampled as clips.

The image model is any SD1.5-architecture diffusers folder (the embedded base model, SD1.5, a fine-tune);
the motion adapter is a diffusers MotionAdapter folder (e.g. guoyww/animatediff-motion-adapter-v1-5-2).
A Hub id must come with a pinned revision (a commit sha), so that a run names exactly what it sampled.
Weights are safetensors only. Clips are uint8 arrays (N, F, H, W, 3); clip i uses its own generator,
seeded from (prompt, seed) as the image path does, so a clip does not depend on what it is batched with.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import SamplingConfig
from .pipeline import ModelNotFound, seeded_batches


def _where(source: str | Path, revision: str | None, what: str) -> tuple[str, str | None]:
    path = Path(source)
    if path.exists():
        return str(path), None
    if str(source).startswith((".", "/")):
        raise ModelNotFound(f"{what} folder {path} does not exist")
    if not revision:
        raise ModelNotFound(f"{what} {source!r} is a Hub id without a revision: pin one (a commit sha), so the "
                            "run names exactly the weights it used")
    return str(source), revision


def load_motion_adapter(source: str | Path, revision: str | None = None, torch_dtype=None):
    """A diffusers MotionAdapter from a folder or a pinned Hub id."""
    from diffusers import MotionAdapter

    src, rev = _where(source, revision, "motion adapter")
    try:
        return MotionAdapter.from_pretrained(src, revision=rev, torch_dtype=torch_dtype, use_safetensors=True)
    except (OSError, EnvironmentError) as err:
        raise ModelNotFound(_hint(f"could not load a motion adapter from {source!r}", err)) from err


def load_video_pipeline(base: str | Path, adapter: str | Path, base_revision: str | None = None,
                        adapter_revision: str | None = None, torch_dtype=None):
    """An ``AnimateDiffPipeline``: the image model's VAE, text encoder and UNet, the adapter's motion modules."""
    from diffusers import AnimateDiffPipeline

    motion = load_motion_adapter(adapter, adapter_revision, torch_dtype)
    src, rev = _where(base, base_revision, "image model")
    try:
        return AnimateDiffPipeline.from_pretrained(src, motion_adapter=motion, revision=rev, torch_dtype=torch_dtype,
                                                   use_safetensors=True)
    except (OSError, EnvironmentError) as err:
        raise ModelNotFound(_hint(f"could not load an image model for AnimateDiff from {base!r}", err)) from err


def _hint(msg: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    return f"{msg}{' (HF_HUB_OFFLINE is set: only the local cache is searched)' if offline else ''}: {err}"


def initial_latents(pipe, gens: list, frames: int, frame_corr: float):
    """Each clip's starting noise (B, C, F, h, w) from its own generator, its frames correlated by ``frame_corr``
    as the adapter was trained (models.recipe.frame_correlated); None for 0: the pipeline draws its own, exactly as
    a released adapter is sampled."""
    if frame_corr <= 0:
        return None
    import torch

    from .recipe import frame_correlated

    c, h = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    own = [frame_correlated(torch.randn((1, c, frames, h, h), generator=g), frame_corr, g) for g in gens]
    return torch.cat(own).to(pipe.device, pipe.unet.dtype)


def generate_clips(pipe, prompts: list[str], seeds: list[int], sampling: SamplingConfig, frames: int,
                   batch_size: int = 8, progress: str | None = None, frame_corr: float = 0.0) -> np.ndarray:
    """uint8 clips (len(prompts), frames, H, W, 3); clip i is seeded by ``prompt_seed(prompts[i], seeds[i])``;
    ``frame_corr``: the checkpoint's frame noise correlation (models.recipe.recipe_frame_correlation)."""

    def call(p, gens):
        return pipe(p, num_frames=frames, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance,
                    generator=gens, latents=initial_latents(pipe, gens, frames, frame_corr), output_type="np").frames

    return seeded_batches(pipe, call, prompts, seeds, sampling, batch_size, progress, "clip")
