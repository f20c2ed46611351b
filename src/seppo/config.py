"""Typed parameters, loaded from ``params.yaml``.

One pydantic model per ``params.yaml`` section; each DVC stage reads only its own section(s).
Every field carries its documentation in ``description``. Unknown keys and bad values fail at
load time with the dotted key, the offending value and the allowed values or keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file, the key and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class WorldConfig(_Section):
    """The embedded default world ("Shapeland"): procedurally generated captions and images."""

    seed: int = Field(0, ge=0, description="Seed of every random draw of the world stage.")
    image_size: Literal[32, 64] = Field(
        32, description="Side of the square images in pixels; object sizes scale with it."
    )
    train_prompts: int = Field(
        300, ge=1, description="Unique captions in the preference (Pick-a-Pic style) split."
    )
    pairs_per_prompt: int = Field(
        6, ge=1, description="Preference pairs per caption (Pick-a-Pic holds ~14 per prompt)."
    )
    eval_prompts: int = Field(
        64, ge=1, description="Held-out captions for evaluation; disjoint from the pairs' captions."
    )
    shard_rows: int = Field(
        500, ge=1, description="Rows per parquet shard of the preference set."
    )
    tie_margin: float = Field(
        0.03,
        ge=0.0,
        description="Simulated annotator: pairs whose true utilities differ by less than this "
        "may be labelled a tie (0.5).",
    )
    tie_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability that a pair within tie_margin is a tie."
    )
    annotator_temperature: float = Field(
        0.05,
        gt=0.0,
        description="Simulated annotator noise: P(image_0 wins) = sigmoid((u0 - u1) / T).",
    )
    identical_pair_rate: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of pairs showing the same image twice (are_different = False).",
    )
    web_size: int = Field(
        20000, ge=1, description="Images in the noisy 'web' corpus used to pretrain the base model."
    )
    web_partial_caption_rate: float = Field(
        0.25, ge=0.0, le=1.0, description="Web corpus: share of captions with attributes left out."
    )
    web_wrong_caption_rate: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="Web corpus: share of captions naming a wrong value for one attribute.",
    )
    utility_check_renders: int = Field(
        2000,
        ge=10,
        description="Held-out renders on which the ground-truth utility's detectors are scored.",
    )


class BaseModelConfig(_Section):
    """The base model theta_0: trained here on the web corpus, or loaded from a Hub id / path."""

    source: str = Field(
        "embedded",
        description="'embedded' trains the tiny SD-architecture model on the world's web corpus; "
        "anything else is a Hub id (e.g. 'stable-diffusion-v1-5/stable-diffusion-v1-5') or a "
        "local diffusers folder, copied into the stage's output.",
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) when source is a Hub id."
    )
    seed: int = Field(0, ge=0, description="Seed of initialisation, batching, noise and timesteps.")
    text_hidden: int = Field(64, ge=8, description="Hidden size of the tiny CLIP text encoder.")
    text_layers: int = Field(2, ge=1, description="Transformer layers of the tiny text encoder.")
    max_tokens: int = Field(
        32, ge=8, le=77, description="Tokenizer model_max_length (captions are short)."
    )
    vae_channels: list[int] = Field(
        [32, 64, 64],
        min_length=2,
        description="AutoencoderKL block_out_channels; n blocks give a 2^(n-1) latent factor.",
    )
    vae_steps: int = Field(1500, ge=1, description="Optimizer steps of VAE training.")
    vae_lr: float = Field(1e-3, gt=0.0, description="VAE learning rate (AdamW).")
    vae_batch_size: int = Field(32, ge=1, description="Batch size of VAE training.")
    vae_kl_weight: float = Field(1e-6, ge=0.0, description="Weight of the VAE's KL term.")
    unet_channels: list[int] = Field(
        [64, 128], min_length=1, description="UNet2DConditionModel block_out_channels."
    )
    unet_layers_per_block: int = Field(1, ge=1, description="UNet layers per block.")
    unet_steps: int = Field(3000, ge=1, description="Optimizer steps of UNet pretraining.")
    unet_lr: float = Field(1e-3, gt=0.0, description="UNet peak learning rate (AdamW, cosine).")
    batch_size: int = Field(64, ge=1, description="Batch size of UNet pretraining.")
    snr_gamma: float = Field(
        5.0, ge=0.0, description="Min-SNR-gamma loss weighting of UNet pretraining; 0 disables it."
    )
    unet_ema_decay: float = Field(
        0.998, ge=0.0, lt=1.0, description="EMA decay of the saved UNet weights; 0 saves the raw weights."
    )
    caption_dropout: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of empty captions during UNet pretraining (enables guidance).",
    )


class SamplingConfig(_Section):
    """How images are sampled from a pipeline: written next to every number that uses them."""

    sampler: Literal["ddim", "ddpm", "euler", "dpmpp_2m"] = Field(
        "ddim", description="Scheduler used for sampling."
    )
    steps: int = Field(20, ge=1, description="Denoising steps.")
    guidance: float = Field(7.5, ge=1.0, description="Classifier-free guidance scale.")


class BaseSamplesConfig(_Section):
    """Samples of the base model on held-out prompts: a grid and its ground-truth utility."""

    prompts: int = Field(64, ge=1, description="Held-out prompts to sample (the first N).")
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds per prompt.")
    grid_prompts: int = Field(16, ge=1, description="Prompts shown in the image grid.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampler settings.")


class Params(_Section):
    """All of params.yaml."""

    world: WorldConfig = Field(default_factory=WorldConfig, description=WorldConfig.__doc__)
    base_model: BaseModelConfig = Field(
        default_factory=BaseModelConfig, description=BaseModelConfig.__doc__
    )
    base_samples: BaseSamplesConfig = Field(
        default_factory=BaseSamplesConfig, description=BaseSamplesConfig.__doc__
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        if self.base_samples.prompts > self.world.eval_prompts:
            raise ValueError(
                f"base_samples.prompts={self.base_samples.prompts} exceeds "
                f"world.eval_prompts={self.world.eval_prompts}"
            )
        return self


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The keys allowed at ``loc`` (minus its last element), for unknown-key errors."""
    current: Any = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not isinstance(field.annotation, type):
            return ""
        current = field.annotation
        if not issubclass(current, BaseModel):
            return ""
    return ", ".join(sorted(current.model_fields))


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; allowed keys here: {_allowed(Params, e['loc'])}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(data: dict[str, Any] | None, source: str = "<params>") -> Params:
    """Validate a params mapping; raise ConfigError naming ``source`` and each bad key."""
    try:
        return Params.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate ``params.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found (run from the project root)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return parse_params(data, str(path))
