"""Loading a text-to-image pipeline from a local diffusers folder or a Hub id, and sampling it.

The embedded base model and SD1.5 go through the same functions. Weights are safetensors only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import SamplingConfig
from ..seeding import seed63

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
}


class ModelNotFound(FileNotFoundError):
    pass


def _pipeline_class(source: str, revision: str | None, local: bool):
    """AnimateDiffPipeline or StableDiffusionXLPipeline when model_index.json names it, else SD."""
    import json

    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    if local:
        index = json.loads((Path(source) / "model_index.json").read_text()) \
            if (Path(source) / "model_index.json").exists() else {}
    else:
        index = DiffusionPipeline.load_config(source, revision=revision)
    if index.get("_class_name") == "AnimateDiffPipeline":  # a video checkpoint (models/video_base, a video round)
        from diffusers import AnimateDiffPipeline

        return AnimateDiffPipeline, {}
    if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")):
        return StableDiffusionXLPipeline, {}
    return StableDiffusionPipeline, {"safety_checker": None, "requires_safety_checker": False}


def load_pipeline(source: str | Path, revision: str | None = None, torch_dtype=None):
    """A ``StableDiffusionPipeline`` (no safety checker), ``StableDiffusionXLPipeline`` or (a video checkpoint)
    ``AnimateDiffPipeline``, from a folder or a Hub id.

    Fails with a message naming what was looked for and the param to change when the folder is
    missing or, offline, the Hub id is not in the local cache.
    """
    path = Path(source)
    local = path.exists()
    if not local and (str(source).startswith((".", "/")) or os.sep in str(source).strip("/").split("/", 1)[-1]):
        raise ModelNotFound(f"pipeline folder {path} does not exist (set base_model.source)")
    try:
        cls, extra = _pipeline_class(str(source), revision, local)
        return cls.from_pretrained(
            str(source), revision=None if local else revision, torch_dtype=torch_dtype, use_safetensors=True, **extra)
    except (OSError, EnvironmentError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = " (HF_HUB_OFFLINE is set: only the local Hugging Face cache is searched)" if offline else ""
        raise ModelNotFound(
            f"could not load a diffusers pipeline from {source!r}{hint}: {err}. "
            "Point base_model.source at a local diffusers folder or a reachable Hub id."
        ) from err


def load_unet(folder: str | Path):
    """The denoiser of a checkpoint folder: a UNet2DConditionModel, or the UNetMotionModel of a video checkpoint
    (unet/config.json names the class); safetensors only."""
    import json

    from diffusers import UNet2DConditionModel, UNetMotionModel

    config = json.loads((Path(folder) / "unet" / "config.json").read_text())
    cls = UNetMotionModel if config.get("_class_name") == "UNetMotionModel" else UNet2DConditionModel
    return cls.from_pretrained(folder, subfolder="unet", use_safetensors=True)


def set_sampler(pipe, sampler: str) -> None:
    import diffusers

    cls = getattr(diffusers, SCHEDULERS[sampler])
    pipe.scheduler = cls.from_config(pipe.scheduler.config)


def prompt_seed(prompt: str, seed: int) -> int:
    """The seed of one (prompt, seed) sample: independent of batch composition and order."""
    return seed63(seed, prompt)


def generate(
    pipe, prompts: list[str], seeds: list[int], sampling: SamplingConfig, batch_size: int = 64,
    progress: str | None = None,
) -> np.ndarray:
    """uint8 images (len(prompts), H, W, 3); image i uses its own generator seeded by
    ``prompt_seed(prompts[i], seeds[i])``, so a sample does not depend on what it is batched with.
    ``progress`` names a bar over the images (with ETA); diffusers' own per-call bar stays off."""

    def call(p, gens):
        return pipe(p, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance, generator=gens,
                    output_type="np").images

    return seeded_batches(pipe, call, prompts, seeds, sampling, batch_size, progress, "img")


def seeded_batches(pipe, call, prompts: list[str], seeds: list[int], sampling: SamplingConfig, batch_size: int,
                   progress: str | None, unit: str) -> np.ndarray:
    """``call(prompts, generators)`` batch by batch, one generator per (prompt, seed), the sampler set and
    diffusers' bar off; the [0, 1] float outputs as uint8, concatenated."""
    import torch

    from ..progress import progress as bar

    set_sampler(pipe, sampling.sampler)
    pipe.set_progress_bar_config(disable=True)
    out = []
    pbar = bar(len(prompts), progress, unit=unit) if progress else None
    for i in range(0, len(prompts), batch_size):
        p = prompts[i : i + batch_size]
        gens = [torch.Generator().manual_seed(prompt_seed(q, s)) for q, s in zip(p, seeds[i : i + batch_size])]
        with torch.no_grad():
            x = np.asarray(call(p, gens))
        out.append(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))
        if pbar is not None:
            pbar.update(len(p))
    if pbar is not None:
        pbar.close()
    return np.concatenate(out)
