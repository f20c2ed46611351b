"""Typed parameters, loaded from ``params.yaml``.

One pydantic model per ``params.yaml`` section; each DVC stage reads only its own section(s).
Every field carries its documentation in ``description``. Unknown keys and bad values fail at
load time with the dotted key, the offending value and the allowed values or keys.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import layout as L

# torch.optim.AdamW's three implementations: the same update, rounded differently (so a model's bits depend on
# the choice). "for-loop" is torch's per-tensor Python loop (its CPU default), "fused" one kernel over all tensors.
AdamWImpl = Literal["for-loop", "foreach", "fused"]
ADAMW_IMPL_DESCRIPTION = (
    "torch AdamW implementation: 'fused' (one kernel for all tensors; on 2 CPU cores a PickScore step 0.78-0.82x, "
    "a VAE step 0.90-0.92x, a UNet step 0.84-1.07x that of 'for-loop': benchmarks/bench_adamw.py), 'foreach', or "
    "'for-loop' (torch's CPU default, what the code used before 2026-11-26: the study's recorded runs). Same "
    "update, other rounding.")


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
    pair_generator_skills: list[float] = Field(
        [0.5, 0.35, 0.2, 0.1],
        min_length=1,
        description="Skill in [0, 1] of each simulated model whose images make the preference pairs "
        "(0: most attributes wrong and most images defective; 1: like shapeland-xl; the embedded base "
        "model draws about like 0.35). How far these reach above the base model sets how often the base "
        "model's own samples beat a winner, i.e. how much the anchor test has to decide (docs/world.md).",
    )

    @model_validator(mode="after")
    def _skills_in_range(self) -> "WorldConfig":
        bad = [s for s in self.pair_generator_skills if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(f"pair_generator_skills must lie in [0, 1], got {bad}")
        return self


class VideoWorldConfig(_Section):
    """Shapeland clips for the text-to-video path (`seppo video-world`; docs/video.md): captioned clips of a scene
    that changes (moves, grows or shrinks, turns another colour), preference pairs from simulated video models,
    winners and losers in the video ingest's folder format, clean held-out clips for the video metrics."""

    seed: int = Field(0, ge=0, description="Seed of every random draw of the video world.")
    image_size: Literal[32, 64] = Field(32, description="Frame side in pixels.")
    frames: int = Field(8, ge=2, le=32, description="Frames per clip.")
    train_prompts: int = Field(200, ge=1, description="Unique clip captions of the preference pairs.")
    pairs_per_prompt: int = Field(4, ge=1, description="Preference pairs per caption.")
    eval_prompts: int = Field(32, ge=1, description="Held-out clip captions (disjoint from the pairs').")
    real_per_eval_prompt: int = Field(2, ge=1, description="Clean reference clips per held-out caption: the "
                                      "'real' clips FID / FVD / LPIPS / SSIM / PSNR compare against.")
    pair_generator_skills: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        [0.5, 0.35, 0.2, 0.1], min_length=1, description="Skill in [0, 1] of each simulated video model of the "
        "pairs (seppo.world.video.clip_skill_generator).")
    annotator_temperature: float = Field(0.05, gt=0.0, description="P(clip 0 wins) = sigmoid((u0 - u1) / T).")
    tie_margin: float = Field(0.03, ge=0.0, description="Pairs closer than this in true utility may be ties.")
    tie_prob: float = Field(0.5, ge=0.0, le=1.0, description="P(tie) for a pair within tie_margin.")
    web_size: int = Field(1000, ge=1, description="Captioned clips of the 'web' corpus the embedded motion "
                          "adapter is pretrained on (video_base); drawn from models of skill web_skills.")
    web_skills: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        [1.0], min_length=1, description="Skills of the simulated video models of the web corpus ([1.0]: clean clips; "
        "[0.9, 0.7, 0.5] before 2026-12-03, 40% of whose clips flickered or shook, and the video base learned that).")


class VideoBaseConfig(_Section):
    """The embedded AnimateDiff (`seppo video-base`; docs/video.md): a diffusers MotionAdapter pretrained on the
    video world's web clips on top of the embedded image model (models/base), whose layers adapt at `spatial_lr`
    (0 keeps them frozen, as AnimateDiff trains)."""

    source: str = Field("embedded", description="'embedded' pretrains the motion adapter here; anything else is a "
                        "diffusers MotionAdapter (a Hub id with `revision`, e.g. guoyww/animatediff-motion-adapter-v1-5-2, "
                        "or a local folder) composed with models/base as it is.")
    revision: str | None = Field(None, description="Hub revision (a commit sha) of `source` when it is a Hub id.")
    seed: int = Field(0, ge=0, description="Seed of initialisation, batching, noise and timesteps.")
    steps: int = Field(4000, ge=1, description="Optimizer steps.")
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate (AdamW, cosine after a 10% warm-up).")
    batch_size: int = Field(8, ge=1, description="Clips per step.")
    heads: int = Field(2, ge=1, description="Attention heads of each temporal transformer.")
    caption_dropout: float = Field(0.1, ge=0.0, le=1.0, description="Share of clips trained on the empty caption "
                                   "(classifier-free guidance at sampling).")
    spatial_lr: float = Field(3e-4, ge=0.0, description=(
        "Peak learning rate of the image model's (spatial) layers during this pretraining; 0 keeps them frozen "
        "(AnimateDiff's recipe: the adapter then composes with any copy of the image model)."))
    text_lr: float = Field(3e-4, ge=0.0, description=(
        "Peak learning rate of the text encoder during this pretraining (the image captions never had the change "
        "phrases); 0 keeps models/base's. When trained, theta_0 saves its own text encoder."))
    ema_decay: float = Field(0.998, ge=0.0, lt=1.0, description=(
        "Decay of an exponential moving average of the trained weights, saved instead of the last step's "
        "(warm-up: min(decay, (1 + step) / (10 + step))); 0 saves the last step, as before."))
    snr_gamma: float = Field(5.0, ge=0.0, description=(
        "Min-SNR-gamma loss weighting (Hang et al. 2023), as the image model's recipe; 0 = plain epsilon MSE."))
    frame_noise_correlation: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Correlation of the training noise between frames (PYoCo's mixed noise prior: a shared component plus "
        "each frame's own); 0 = independent, as AnimateDiff. Recorded in the folder: sampling and fine-tuning "
        "of every video arm follow it."))


class VideoFeaturesConfig(_Section):
    """The embedded FID / FVD feature networks (`seppo video-features`; docs/video.md): a 2-D frame network and a
    3-D clip network trained on freshly rendered video-world frames and clips (labels: what was drawn), saved as
    `.safetensors` trunks that video.fid_weights / video.fvd_weights name. Embedded-world metrics: comparable
    between this project's checkpoints, never with published FID / FVD."""

    seed: int = Field(0, ge=0, description="Seed of the renders, initialisation and batches.")
    width: int = Field(16, ge=8, description="Channels of the first block (then 2x, 2x, 4x); a multiple of 8.")
    dim: int = Field(64, ge=8, description="Feature size (the Frechet distance's dimension).")
    frame_images: int = Field(6000, ge=100, description="Rendered images the frame network trains on (10% held "
                              "out for the accuracies in the metrics).")
    frame_steps: int = Field(600, ge=1, description="Frame network optimizer steps.")
    clips: int = Field(3000, ge=100, description="Rendered clips the clip network trains on (10% held out).")
    clip_steps: int = Field(600, ge=1, description="Clip network optimizer steps.")
    frozen_share: float = Field(0.1, ge=0.0, le=0.5, description="Share of training clips that hold their first "
                                "frame (the change class 'none').")
    batch_size: int = Field(64, ge=2, description="Images or clips per step.")
    lr: float = Field(3e-3, gt=0.0, description="Peak learning rate (AdamW, one-cycle).")
    sanity_clips: int = Field(64, ge=8, description="Clips per set of the sanity check (identical, clean, frozen, "
                              "flickering, noisy sets vs clean clips); the video evaluation's set size by default.")

    @model_validator(mode="after")
    def _group_norm(self):
        if self.width % 8:
            raise ValueError(f"width={self.width}: a multiple of 8 (the networks normalise in 8 groups)")
        return self


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
        [16, 32, 32],
        min_length=2,
        description="AutoencoderKL block_out_channels; n blocks give a 2^(n-1) latent factor.",
    )
    vae_steps: int = Field(400, ge=1, description="Optimizer steps of VAE training.")
    vae_lr: float = Field(1e-3, gt=0.0, description="VAE learning rate (AdamW).")
    vae_batch_size: int = Field(32, ge=1, description="Batch size of VAE training.")
    vae_kl_weight: float = Field(1e-6, ge=0.0, description="Weight of the VAE's KL term.")
    unet_channels: list[int] = Field(
        [32, 64], min_length=1, description="UNet2DConditionModel block_out_channels."
    )
    unet_layers_per_block: int = Field(1, ge=1, description="UNet layers per block.")
    unet_attention_heads: int = Field(
        2, ge=1, description="Attention heads of every UNet transformer block (diffusers' `attention_head_dim`, "
        "which UNet2DConditionModel reads as the head count). 2 (head widths 16 / 32): 13% less pretraining time "
        "than 8 at equal quality on this CPU (docs/world.md); the study's theta_0 has 8 (study.shared).")
    unet_steps: int = Field(800, ge=1, description="Optimizer steps of UNet pretraining.")
    unet_lr: float = Field(3e-3, gt=0.0, description="UNet peak learning rate (AdamW, cosine).")
    batch_size: int = Field(64, ge=1, description="Batch size of UNet pretraining.")
    noise_offset: float = Field(
        0.3, ge=0.0, description="Offset-noise scale of UNet pretraining (per-channel constant noise); "
        "0.1 left backgrounds ignoring the caption, 0.3 makes them follow it."
    )
    snr_gamma: float = Field(
        5.0, ge=0.0, description="Min-SNR-gamma loss weighting of UNet pretraining; 0 disables it."
    )
    unet_ema_decay: float = Field(
        0.998, ge=0.0, lt=1.0, description="EMA decay of the saved UNet weights; 0 saves the raw weights."
    )
    adamw_impl: AdamWImpl = Field(
        "for-loop", description="VAE and UNet pretraining's " + ADAMW_IMPL_DESCRIPTION + " Any change of rounding "
        "is another theta_0: with 'fused' the default's one-round gain over theta_0 was +0.038 [-0.003, +0.080] "
        "(3 training seeds) against +0.065 [+0.035, +0.095] with 'for-loop' (docs/world.md), so the default keeps it.")
    caption_dropout: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of empty captions during UNet pretraining (enables guidance).",
    )


class SamplingConfig(_Section):
    """How images are sampled from a pipeline: written next to every number that uses them."""

    sampler: Literal["ddim", "ddpm", "euler", "dpmpp_2m", "pndm"] = Field(
        "ddim", description="Scheduler used for sampling (pndm is SD1.5's pipeline default)."
    )
    steps: int = Field(20, ge=1, description="Denoising steps.")
    guidance: float = Field(7.5, ge=1.0, description="Classifier-free guidance scale.")


class BaseSamplesConfig(_Section):
    """Samples of the base model on held-out prompts: a grid and its ground-truth utility."""

    prompts: int = Field(64, ge=1, description="Held-out prompts to sample (the first N).")
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds per prompt.")
    grid_prompts: int = Field(16, ge=1, description="Prompts shown in the image grid.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampler settings.")


class IngestConfig(_Section):
    """Winning-image ingest from a Pick-a-Pic v2 style source, with per-row quarantine."""

    source: str = Field(
        L.WORLD_PICKAPIC,
        description="Parquet shards (a folder, a glob or a file), webdataset tars (a folder or "
        "glob of .tar), a `datasets` save_to_disk folder, or a Hub dataset id. The default is the "
        "embedded world's shards. A local source (inside the project or not) is a DVC dependency "
        "of the ingest stage (`seppo plan`), so a changed shard re-runs ingest; files next to the "
        "shards that are not shards (README, _SUCCESS, .json) are ignored and listed in counts.json. "
        "A folder holding several splits (`<split>-00000-of-00042.parquet`) is read for `split` only. "
        "The official Hub copy of Pick-a-Pic v2 is offline: use a mirror.",
    )
    source_format: Literal["auto", "parquet", "webdataset", "datasets"] = Field(
        "auto", description="How to read `source`; 'auto' decides from what is on disk."
    )
    split: str = Field("train", description="Split of a `datasets` source, or of a Hub-layout parquet folder.")
    revision: str | None = Field(
        None,
        description="Commit sha (40 hex characters) of a Hub dataset source; required for a Hub id, "
        "so the data read is pinned (recorded in params, dvc.lock and counts.json). Unused for a local source.",
    )
    batch_rows: int = Field(
        256, ge=1, description="Rows held in memory at once (ingest streams shard by shard)."
    )
    min_side: int = Field(16, ge=1, description="Smallest accepted image side in pixels.")
    max_side: int = Field(4096, ge=1, description="Largest accepted image side in pixels.")
    allowed_formats: list[str] = Field(
        ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"],
        min_length=1,
        description="Accepted image container formats (PIL names); other decodable formats are "
        "quarantined. MPO is the JPEG variant many cameras write.",
    )
    allowed_modes: list[str] = Field(
        ["RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", "I;16"],
        min_length=1,
        description="Accepted PIL image modes. Every accepted image that is not RGB (or carries an "
        "EXIF rotation) is converted to upright RGB (transparency over white) and stored as PNG; "
        "counts.json and the ingest metrics count each conversion.",
    )
    max_caption_chars: int = Field(
        1000, ge=1, description="Longest accepted caption, in characters (after stripping)."
    )
    max_quarantine_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="The validate stage fails when quarantined rows exceed this share of rows in.",
    )
    max_unreadable_shards: int = Field(
        0, ge=0, description="The validate stage fails when more shards than this cannot be read "
        "(whole or in part: rows lost in a corrupt row group make their shard count)."
    )
    min_winners: int = Field(
        1, ge=0, description="The validate stage fails when fewer winners than this are kept (an "
        "empty source, or one of only ties, must not validate green)."
    )

    @model_validator(mode="after")
    def _sides(self) -> "IngestConfig":
        if self.min_side > self.max_side:
            raise ValueError(f"min_side={self.min_side} exceeds max_side={self.max_side}: every row would be "
                             "quarantined")
        return self


class CacheConfig(_Section):
    """Latents and text embeddings of the winners (and losers), encoded once by the base model."""

    resolution: int | None = Field(
        None, ge=8, description="Image side fed to the VAE; null = the base model's sample size x VAE factor."
    )
    resize: Literal["bilinear", "bicubic", "lanczos"] = Field(
        "bilinear", description="Resampling filter of the shorter-side resize."
    )
    crop: Literal["center", "random"] = Field(
        "center", description="Square crop after resizing; 'random' is seeded per row."
    )
    flip: Literal["none", "random"] = Field(
        "none", description="Horizontal flip policy; 'random' flips half the rows, seeded per row."
    )
    seed: int = Field(0, ge=0, description="Seed of random crops and flips (per row, recorded).")
    latent: Literal["mean", "sample"] = Field(
        "mean",
        description="Store the VAE posterior mean, or one seeded sample of it (per row).",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Storage dtype of latents and embeddings."
    )
    batch_size: int = Field(64, ge=1, description="Images per VAE / text-encoder batch.")
    shard_rows: int = Field(4096, ge=1, description="Rows per safetensors shard of latents.")
    include_losers: bool = Field(
        True, description="Also cache the losers (read only by the Diffusion-DPO baseline)."
    )


class TrainConfig(_Section):
    """SePPO rounds (and the SFT / Diffusion-DPO baselines, which share all other code).

    beta convention: per-sample errors are MEAN squared errors over C*H*W and the logit is
    -0.5 * beta * (D_w - s * D_r), as in the Diffusion-DPO code (docs/seppo.md, "Errors and beta").
    """

    loss: Literal["seppo", "dpo", "sft"] = Field(
        "seppo", description="seppo: winners + reference samples; dpo: real winner/loser pairs with "
        "theta_0 as reference; sft: winners only, plain denoising loss."
    )
    rounds: int = Field(1, ge=1, description="Number of rounds K; theta_k is saved after round k.")
    strategy: Literal["uniform", "first", "latest"] = Field(
        "uniform", description="Reference selection from the bank {theta_0..theta_{k-1}} (seppo only)."
    )
    criterion: Literal["sign", "indicator", "none", "soft", "oracle", "oracle_drop", "reward", "implicit"] = Field(
        "none", description="How s is decided per (winner, reference sample). The anchor on the winner, gap = "
        "e_ref^w - e_pol^w: sign (the paper: s = sign(gap), a reference sample is learned as a loser or a second "
        "winner), indicator (loser or dropped, never flipped), soft (s = tanh(gap / (anchor_soft_c * SE)), needs "
        "anchor_draws >= 2). none: always a loser (the paper's 'w/o AAF' ablation). Criteria that read the reference "
        "sample itself: oracle (embedded world only: s = -1 where the ground-truth utility of the reference sample "
        "beats its winner's by more than oracle_margin, else +1: the ceiling of every anchor), oracle_drop (the same, "
        "0 instead of -1: learn as loser or skip), reward (the same with the preference scorer reward_scorer, scored "
        "in the refsamples stage, margin reward_margin), implicit (the policy's DPO implicit reward r(x) = "
        "-(e_pol(x) - e_ref(x)): s = -1 where r(reference sample) > r(winner), on the loss's draw or on anchor_draws "
        "own draws with a margin of anchor_margin_z standard errors; anchor_fallback where undecided)."
    )
    oracle_margin: float = Field(
        0.0, ge=0.0, description="criterion oracle / oracle_drop: flip only where u_reference > u_winner + this "
        "(ground-truth utility units, 0-1).")
    reward_scorer: str = Field(
        "pickscore_x100", description="criterion reward: the preference scorer (an evaluate.scorers name, weights "
        "from evaluate.models) that scores each decoded reference sample and its winner in the refsamples stage.")
    reward_margin: float = Field(
        0.0, ge=0.0, description="criterion reward: flip only where the scorer prefers the reference sample by more "
        "than this, in the scorer's own units (pickscore_x100: x100 cosine).")
    anchor_draws: int = Field(
        0, ge=0, description="0: the anchor uses the loss's own (eps, t) draw (the paper). K >= 2: the anchor "
        "averages the gap over K further independent (eps, t) draws per winner (no gradient; costs K policy and "
        "K reference forwards per winner, see benchmarks/bench_anchor.py) and knows its standard error.")
    anchor_margin_z: float = Field(
        0.0, ge=0.0, description="sign/indicator: decide only where |mean gap| > z * SE; elsewhere use "
        "anchor_fallback. 0 = no margin. Needs anchor_draws >= 2; criteria none and soft ignore it.")
    anchor_fallback: Literal["loser", "drop"] = Field(
        "loser", description="s where the margin is not met: loser (+1, plain DPO pair) or drop (0, winner-only term).")
    anchor_soft_c: float = Field(1.0, gt=0.0, description="soft anchor: s = tanh(gap / (c * SE)).")
    noise_offset: float | Literal["auto"] = Field(
        "auto", description="Offset noise of the preference/SFT losses (a per-channel constant added to eps, as in "
        "pretraining). auto: the base model's own recipe (the embedded base records it in "
        "models/base/seppo_provenance.json), 0 for a model without that record (real SD checkpoints).")
    oracle: Literal["auto", "off"] = Field(
        "auto", description="auto: where every caption of the round is a Shapeland caption (the embedded world), "
        "the refsamples stage decodes each reference sample and its winner and scores both with the world's "
        "ground-truth utility, and training reports how often the anchor agrees with that truth. off: never.")
    beta: float = Field(2000.0, gt=0.0, description="Paper beta (2000 SD1.5, 5000 SDXL); logit uses 0.5*beta.")
    tie_tol: float = Field(
        1e-7, ge=0.0, description="|e_ref^w - e_pol^w| at or below this gives s = 0 (no reference term)."
    )
    updates_per_round: int = Field(60, ge=1, description="Optimizer updates per round.")
    micro_batch: int = Field(16, ge=1, description="Winners per process per forward (each paired with one reference sample).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer update.")
    lr: float = Field(2e-4, gt=0.0, description="Peak learning rate (AdamW).")
    lr_warmup: int = Field(
        0, ge=0, description="Linear warm-up in optimizer updates; must be shorter than a round."
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Schedule after warm-up, over the whole run (all rounds)."
    )
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="AdamW beta2.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient-norm clipping.")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on CUDA devices that support it, else fp16 on CUDA, fp32 on CPU."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    use_8bit_adam: bool = Field(False, description="bitsandbytes AdamW8bit (CUDA only).")
    channels_last: bool = Field(False, description="Both UNets in channels-last memory format (faster convs "
                                "on recent NVIDIA GPUs with AMP; no gain on CPU).")
    compile: bool = Field(False, description="torch.compile the policy UNet in place (Module.compile: state-dict "
                          "keys unchanged); pays off on long CUDA runs, minutes of compile time on CPU.")
    reference_errors: Literal["in_step", "precomputed"] = Field(
        "in_step", description="precomputed (seppo only): the refsamples stage also runs the reference UNet on "
        "every position's (winner, reference sample) with the round's own noise and timesteps and stores the "
        "per-sample errors; training then never loads the reference UNet (its memory and ~1/4 of each step).")
    offload_reference: bool = Field(
        False, description="Keep the reference UNet's weights in CPU memory and stream them to the device for "
        "each forward (accelerate cpu_offload): frees its VRAM (SD1.5 fp16 1.7 GB, SDXL 5.1 GB) for slower steps.")
    lora_rank: int = Field(0, ge=0, description="0: full UNet fine-tuning; >0: LoRA (peft) of this rank on attention.")
    lora_alpha: float | None = Field(None, gt=0.0, description="LoRA alpha; null = the rank.")
    seed: int = Field(0, ge=0, description="Seed of data order, noise, timesteps and reference selection.")
    ref_samples: Literal["per_winner", "per_prompt"] = Field(
        "per_winner",
        description="per_winner: a fresh reference sample for every winner (paper-faithful); "
        "per_prompt: ref_samples_per_prompt samples per unique prompt per round, reused by its winners.",
    )
    ref_samples_per_prompt: int = Field(2, ge=1, description="Samples per unique prompt with ref_samples=per_prompt.")
    ref_batch_size: int = Field(64, ge=1, description="Prompts per batch when generating reference samples.")
    ref_sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(sampler="dpmpp_2m", steps=10), description="Sampler, steps and guidance of the reference samples."
    )
    processes: int = Field(
        1, ge=1, description="Training processes (GPUs) the accelerate config launches; sizes each round "
        "(effective batch = processes x micro_batch x grad_accum) and is checked at start.")
    accelerate_config: str | None = Field(
        None, description="A file in configs/accelerate/ to launch training with (`accelerate launch`); "
        "null runs one plain process.")
    checkpoint_every: int = Field(10, ge=1, description="Save resumable state every N updates.")
    max_bad_steps: int = Field(
        5, ge=1, description="Stop after this many consecutive NaN/Inf losses (last good state kept)."
    )
    log_every: int = Field(1, ge=1, description="Log metrics every N updates.")

    @model_validator(mode="after")
    def _anchor_needs_draws(self) -> "TrainConfig":
        if self.anchor_draws == 1:
            raise ValueError("anchor_draws=1 has no standard error: use 0 (the loss's own draw) or >= 2")
        if self.anchor_draws < 2 and (self.criterion == "soft" or self.anchor_margin_z > 0):
            what = "criterion=soft" if self.criterion == "soft" else f"anchor_margin_z={self.anchor_margin_z}"
            raise ValueError(f"{what} needs a standard error: set anchor_draws >= 2 (got {self.anchor_draws})")
        return self

    @model_validator(mode="after")
    def _criterion_inputs(self) -> "TrainConfig":
        if self.criterion in ("oracle", "oracle_drop") and self.oracle != "auto":
            raise ValueError(f"criterion={self.criterion} decides from the embedded world's ground truth: it needs "
                             "train.oracle=auto (got off)")
        if self.criterion == "reward" and self.reward_scorer not in SCORER_NAMES:
            raise ValueError(f"reward_scorer={self.reward_scorer!r} is not a scorer; scorers: {list(SCORER_NAMES)}")
        if self.criterion == "implicit" and self.anchor_draws and self.reference_errors == "precomputed":
            raise ValueError("criterion=implicit with anchor_draws >= 2 runs the reference UNet on each draw: it needs "
                             "reference_errors=in_step")
        return self

    @model_validator(mode="after")
    def _precomputed_needs_seppo(self) -> "TrainConfig":
        if self.reference_errors == "precomputed" and self.loss != "seppo":
            raise ValueError(f"reference_errors=precomputed needs loss=seppo (got loss={self.loss!r})")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainConfig":
        if self.lr_warmup >= self.updates_per_round * self.rounds:
            raise ValueError(
                f"lr_warmup={self.lr_warmup} is not shorter than the run "
                f"({self.rounds} rounds x {self.updates_per_round} updates): the learning rate would "
                "never reach train.lr"
            )
        return self


# The evaluation scorers by name (seppo.evaluation.scorers registers one factory per name; a test
# checks that the two agree), so that a wrong name fails at load, not after every image is made.
ScorerName = Literal["shapeland_utility", "pickscore_x100", "hps_v20_x100", "hps_v21_x100", "imagereward",
                     "clip_l14_x100", "aesthetic_laion"]
SCORER_NAMES: tuple[str, ...] = ScorerName.__args__
# The folder the scorer_model stage writes (the embedded world's PickScore)
EMBEDDED_PICKSCORE = L.PICKSCORE
EMBEDDED_PREFERENCES = L.WORLD_PICKAPIC
RELEASED_PICKSCORE = "yuvalkirstain/PickScore_v1"
RELEASED_PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def resolve_auto(data: dict[str, Any]) -> dict[str, Any]:
    """``auto`` (or absent) in scorer_model.enabled and evaluate.models.pickscore_* follows ingest.source:
    the embedded world trains its own PickScore and scores with it; any other preference set turns that
    stage off and scores with the released PickScore. So pointing the project at real data is one setting."""
    data = dict(data)
    source = str((data.get("ingest") or {}).get("source", EMBEDDED_PREFERENCES)).rstrip("/")
    scorer = dict(data.get("scorer_model") or {})
    if scorer.get("enabled", "auto") == "auto":
        scorer["enabled"] = source == EMBEDDED_PREFERENCES
        data["scorer_model"] = scorer
    evaluate = dict(data.get("evaluate") or {})
    models = dict(evaluate.get("models") or {})
    for key, released in (("pickscore_model", RELEASED_PICKSCORE),
                          ("pickscore_processor", RELEASED_PICKSCORE_PROCESSOR)):
        if models.get(key, "auto") == "auto":
            models[key] = EMBEDDED_PICKSCORE if _truthy(scorer["enabled"]) else released
    evaluate["models"] = models
    data["evaluate"] = evaluate
    # the video metrics' feature networks: the embedded ones (the video_features stage) on the embedded video world,
    # none on other clips (FID / FVD skipped unless their weights are named)
    video = dict(data.get("video") or {})
    embedded_video = str(video.get("source", L.VIDEO_WINNERS)).rstrip("/") == L.VIDEO_WINNERS
    for key, net in (("fid_weights", L.VIDEO_FID_NET), ("fvd_weights", L.VIDEO_FVD_NET)):
        if video.get(key, "auto") == "auto":
            video[key] = net if embedded_video else None
    data["video"] = video
    return data


class ScorerModels(_Section):
    """Where each scorer's weights are: local paths, or Hub ids looked up in the local HF cache."""

    # in params, `auto` (the default): models/pickscore when scorer_model is enabled, else the released weights
    pickscore_model: str | None = Field(RELEASED_PICKSCORE, description=(
        "PickScore CLIP-H model; 'auto' in params = models/pickscore (the embedded scorer) when scorer_model is "
        "enabled, else yuvalkirstain/PickScore_v1."))
    pickscore_processor: str | None = Field(RELEASED_PICKSCORE_PROCESSOR, description=(
        "PickScore's processor (tokenizer + image); 'auto' as pickscore_model."))
    clip_model: str | None = Field(
        "openai/clip-vit-large-patch14", description="CLIP-L/14 for clip_l14_x100 and the aesthetic head.")
    aesthetic_head: str | None = Field(
        None, description="LAION improved-aesthetic-predictor weights (sac+logos+ava1-l14-linearMSE.pth), "
        "a local file or 'org/repo::file'.")
    hps_v20_checkpoint: str | None = Field(None, description="HPS_v2_compressed.pt (local or 'org/repo::file').")
    hps_v21_checkpoint: str | None = Field(
        "xswu/HPSv2::HPS_v2.1_compressed.pt", description="HPS_v2.1_compressed.pt (local or 'org/repo::file').")
    hps_architecture: str = Field("ViT-H-14", description="open_clip architecture of the HPS model.")
    imagereward_checkpoint: str | None = Field(
        "THUDM/ImageReward::ImageReward.pt", description="ImageReward.pt (local or 'org/repo::file').")
    imagereward_med_config: str | None = Field(
        "THUDM/ImageReward::med_config.json", description="BLIP med config json of ImageReward.")
    imagereward_tokenizer: str | None = Field(
        "google-bert/bert-base-uncased", description="Folder with bert-base-uncased's vocab.txt.")
    imagereward_vit: Literal["large", "base"] = Field("large", description="BLIP ViT size (large as released).")
    imagereward_image_size: int = Field(
        224, ge=16, description="BLIP input side (224 as released; smaller only for tiny test/benchmark models).")


class ScorerModelConfig(_Section):
    """A small PickScore trained on the embedded world (CLIP contrastive, then PickScore's pair loss).

    Saved as PickScore is published, so ``pickscore_x100`` with ``evaluate.models.pickscore_model:
    models/pickscore`` scores the embedded default through the real PickScore code path.
    """

    enabled: bool = Field(True, description=(
        "Train it (the `scorer_model` stage). 'auto' in params (the default) = true exactly when ingest.source is "
        "the embedded world: the embedded PickScore learns from that world's pairs and true utilities."))
    seed: int = Field(0, ge=0, description="Seed of initialisation, batches and the held-out split.")
    width: int = Field(64, ge=16, description="Hidden width of both towers.")
    heads: int = Field(4, ge=1, description="Attention heads of both towers.")
    vision_layers: int = Field(4, ge=1, description="ViT layers.")
    text_layers: int = Field(2, ge=1, description="Text transformer layers.")
    patch_size: int = Field(8, ge=1, description="ViT patch side in pixels.")
    projection_dim: int = Field(64, ge=8, description="Joint embedding size.")
    max_tokens: int = Field(32, ge=8, description="Tokenizer length (captions are padded to it).")
    contrastive_steps: int = Field(400, ge=1, description="Phase 1 steps (InfoNCE on the web corpus).")
    contrastive_batch: int = Field(128, ge=2, description="Phase 1 batch size.")
    contrastive_lr: float = Field(1e-3, gt=0, description="Phase 1 peak learning rate (AdamW, cosine).")
    preference_steps: int = Field(100, ge=1, description="Phase 2 steps (PickScore's loss on pairs).")
    preference_batch: int = Field(64, ge=1, description="Phase 2 pairs per step.")
    preference_lr: float = Field(3e-5, gt=0, description="Phase 2 peak learning rate.")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up of each phase.")
    adamw_impl: AdamWImpl = Field("fused", description="Both phases' " + ADAMW_IMPL_DESCRIPTION)
    holdout_share: float = Field(0.15, gt=0, lt=1, description="Share of captions whose pairs are held out.")
    truth_margin: float = Field(0.02, ge=0, description="Pairs whose ground-truth utilities differ by "
                                "less are left out of the agreement numbers.")


class EvaluateConfig(_Section):
    """Evaluation of theta_0 and every round: generation once per (checkpoint, prompt, seed), scores, CIs."""

    prompts: str = Field(
        "embedded",
        description="'embedded' (the world's held-out prompts), a .txt/.csv/.tsv/.parquet/.json/.jsonl "
        "file, or a `datasets` folder / Hub id (e.g. Pick-a-Pic v2 validation_unique, Parti prompts).",
    )
    prompt_column: str = Field("caption", description="Prompt column of a table or dataset source.")
    split: str | None = Field(None, description="Split of a dataset source (e.g. validation_unique).")
    max_prompts: int | None = Field(64, ge=1, description="Use the first N prompts; null = all.")
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds per prompt (one generator per image).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampler settings.")
    batch_size: int = Field(64, ge=1, description="Images per generation / scoring batch.")
    accelerate_config: str | None = Field(
        None, description="accelerate config for the eval_<checkpoint> stages: images are split across its "
        "processes (every P-th image each) and gathered; null = one process.")
    scorers: list[ScorerName] = Field(
        ["shapeland_utility", "pickscore_x100"], min_length=1,
        description="Scorer names (each carries its scale and version): " + ", ".join(SCORER_NAMES) + ".")
    models: ScorerModels = Field(default_factory=ScorerModels, description=ScorerModels.__doc__)
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples (over prompts).")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap.")
    grid_prompts: int = Field(8, ge=1, description="Prompts in the base-vs-rounds image grid.")


class OrchestrationConfig(_Section):
    """How the Prefect flows run (read by flows/, not by any DVC stage)."""

    eval_task_runner: Literal["sequential", "dask"] = Field(
        "sequential", description="dask: the evaluate flow runs the stale eval_<checkpoint> stages in parallel "
        "on a Dask cluster (prefect-dask), then commits them to DVC.")
    dask_workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster.")
    dask_address: str | None = Field(None, description="Scheduler address of an existing Dask cluster "
                                     "(e.g. tcp://10.0.0.5:8786); null = start a local one.")


class StudyVariant(_Section):
    """One row of the ablation study: a name, a label and the train.* params it overrides."""

    label: str = Field(..., min_length=1, description="Row label in the tables and figures (e.g. 'w/o anchor').")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted train.* params keys -> values, applied as `dvc exp run -S`. "
        "Only train.* may vary: the shared stages and the evaluation set are the same for every variant; "
        "train.seed and train.rounds are set by the study itself.")
    lr: float | None = Field(None, gt=0.0, description="This method's learning rate (train.lr; picked by a "
                             "one-seed sweep per method and stated in the table); null = train.lr.")
    n_seeds: int | None = Field(None, ge=1, description="Run only the first N of study.seeds (budget: the "
                                "strategy rows); null = all seeds. Shown in the table.")
    train: bool = Field(True, description="false: nothing is trained; the row is theta_0 (the base model), "
                        "read from round 0 of the runs.")
    pending: bool = Field(False, description="A placeholder to be decided (e.g. the best robust anchor of "
                          "Evidence I): listed, validated on the keys that exist, never run.")
    paper: str | None = Field(None, description="The paper's ablation row this variant answers (a key of "
                              "seppo.study.report.PAPER_ROWS), or null.")


def _default_variants() -> dict[str, StudyVariant]:
    return {"base": StudyVariant(label="base (theta_0)", train=False)}


class StudyConfig(_Section):
    """The ablation study (`seppo study`): variants x training seeds as DVC experiments, aggregated with CIs."""

    rounds: int = Field(5, ge=1, description="Rounds K of every run (>= 5 so that uniform differs from latest).")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Training seeds (train.seed): data order, "
                             "noise, timesteps and reference selection; the same seed gives every variant the "
                             "same selection sequence. The base model, world and evaluation set are shared.")
    variants: dict[str, StudyVariant] = Field(
        default_factory=_default_variants, description="Variant name -> StudyVariant, in table order.")
    common: dict[str, Any] = Field(
        default_factory=dict, description="train.* overrides applied to every trained variant before its own: "
        "the study's cost reductions (e.g. train.ref_samples: per_prompt), stated in the aggregate's header.")
    shared: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the shared stages' own sections (base_model.*, "
        "scorer_model.*), the same for every run: the study's theta_0 and scorer recipes where they differ from "
        "the default pipeline's. `seppo study` computes those stages once, with every core, before the variants "
        "(each run then checks them out of DVC's run cache), so a pinned recipe reproduces its theta_0 bit for "
        "bit on the machine type that trained it.")
    target: str = Field("evaluate", description="The DVC stage each experiment reproduces (with its upstream).")
    jobs: int = Field(2, ge=1, description="Experiments run at once (<= 2 on the 2-core machine; each gets "
                      "cores / jobs torch threads). More on a cluster.")
    out: str = Field(L.STUDY, description="Folder of the per-run records, aggregate table and figures.")
    compare_to: list[str] = Field([], description="Variants every other is paired against (differences on "
                                  "the same seed and prompt), e.g. [none, sft]; names of variants.")
    metrics: list[str] | None = Field(None, description="Scorers in the aggregate; null = all in the records.")
    n_boot: int = Field(2000, ge=100, description="Two-level bootstrap resamples (seeds, then prompts).")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap.")

    @model_validator(mode="after")
    def _names(self) -> "StudyConfig":
        bad = [n for n in self.variants if not n.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"variant names must be letters, digits, _ or - (got {bad})")
        missing = [c for c in self.compare_to if c not in self.variants]
        if missing:
            raise ValueError(f"compare_to names unknown variants {missing}; variants: {sorted(self.variants)}")
        return self


VIDEO_STUDY_OUT = "reports/video/study"
VIDEO_STUDY_TARGET = "video/dvc.yaml:video_evaluate"


class VideoStudyConfig(StudyConfig):
    """The video study (`seppo video-study`, docs/video.md "Multi-seed video runs"): the video arms x training seeds
    as DVC experiments of video/dvc.yaml, resumable and aggregated as the image study. A variant's arm is its
    train.loss (seppo | sft | dpo); each run trains that one arm for ``rounds`` rounds from models/video_base and
    evaluates every round. train.* reaches the video rounds under video.train_overrides, so a variant may not set a
    key those override. The shared stages (video world, theta_0, feature networks, cache, the base's clips) are the
    workspace's `dvc repro video/dvc.yaml`: ``shared`` must stay empty."""

    rounds: int = Field(3, ge=1, description="Rounds K of every run (each round evaluated: curves over rounds).")
    target: str = Field(VIDEO_STUDY_TARGET, description="The DVC stage each experiment reproduces.")
    out: str = Field(VIDEO_STUDY_OUT, description="Folder of the per-run records, aggregate table and figures.")

    @model_validator(mode="after")
    def _no_shared(self) -> "VideoStudyConfig":
        if self.shared:
            raise ValueError("video_study.shared must be empty: the video study's shared stages are the "
                             "workspace's `dvc repro video/dvc.yaml`")
        return self


VIDEO_ARMS = ("seppo", "sft", "dpo")


class VideoConfig(_Section):
    """The text-to-video pipeline (`video/dvc.yaml`, docs/video.md): SePPO and its baselines on AnimateDiff through
    the same select / refsamples / train / evaluate code as images, with 5-D latents (B, C, F, h, w).

    Training reads the ``train`` section with ``train_overrides`` applied on top (clips cost ~F times an image, so
    the video default trains fewer, smaller updates); every arm starts from theta_0 = models/video_base."""

    source: str = Field(L.VIDEO_WINNERS, description="The winning clips: a folder with captions.csv / "
                        "captions.parquet (clip_id, caption, path) and frame folders or animated files "
                        "(seppo.data.video_ingest). A ChronoMagic-style mirror goes here.")
    losers: str | None = Field(L.VIDEO_LOSERS, description="The losing clips in the same format (only the "
                               "dpo arm reads them); null when the set has winners only.")
    real: str = Field(L.VIDEO_REAL, description="Held-out real clips (same format), the references of "
                      "FID / FVD / LPIPS / SSIM / PSNR; matched to generated clips by caption.")
    prompts: str = Field(L.VIDEO_PROMPTS, description="Evaluation prompts: a parquet with columns "
                         "prompt_id, caption (and split: only split == 'eval' is used when present).")
    frames: int = Field(8, ge=2, le=64, description="Frames per clip: ingest expects it, generation makes it.")
    max_side: int = Field(1024, ge=8, description="Ingest: the largest frame side accepted (read from the header).")
    sample_frames: Literal["exact", "uniform"] = Field(
        "exact", description="Ingest: 'exact' quarantines a clip without exactly `frames` frames; 'uniform' keeps "
        "`frames` frames evenly spaced over a longer clip (time-lapse videos, as MagicTime samples them).")
    trainable: Literal["motion", "all"] = Field(
        "motion", description="What trains: the motion modules only (AnimateDiff fine-tunes; a round's checkpoint "
        "also holds them as a MotionAdapter folder) or the whole UNetMotionModel.")
    arms: list[Literal["seppo", "sft", "dpo"]] = Field(
        ["seppo", "sft"], min_length=1, description="Losses trained, each on its own chain of rounds from theta_0 "
        "(seppo uses train.criterion / strategy; the report compares every arm with the base); train.rounds "
        "rounds each (or video.train_overrides' rounds).")
    train_overrides: dict[str, Any] = Field(
        {"updates_per_round": 30, "micro_batch": 4, "ref_batch_size": 16, "checkpoint_every": 10},
        description="train.* keys replaced for video (validated against the train section's fields).")
    eval_prompts: int = Field(32, ge=1, description="Evaluation prompts (the first N of `prompts`).")
    eval_seeds: list[int] = Field([0, 1], min_length=1, description="Sampling seeds per evaluation prompt.")
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(guidance=2.0), description=(
        "How evaluation clips are sampled. Guidance 2, not the image model's 7.5: chosen on training captions "
        "disjoint from the evaluation prompts (scripts/video_guidance.py, docs/video.md)."))
    batch_size: int = Field(8, ge=1, description="Clips per generation batch.")
    lpips_weights: str | None = Field(None, description="LPIPS network: a .safetensors state dict, 'torchvision' "
                                      "(backbone from torchvision's local cache), or null to skip LPIPS.")
    fid_weights: str | None = Field(L.VIDEO_FID_NET, description=(
        "FID's frame network: Inception-v3 weights (.safetensors), 'torchvision' (its cache), the embedded network "
        f"({L.VIDEO_FID_NET}, the video_features stage), or null to skip; 'auto' in params = the embedded network "
        "on the embedded video world, else null."))
    fvd_weights: str | None = Field(L.VIDEO_FVD_NET, description=(
        "FVD's clip network: R3D-18 weights (.safetensors), 'torchvision', the embedded network "
        f"({L.VIDEO_FVD_NET}), or null to skip; 'auto' in params as fid_weights."))
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples (over prompts) of every CI.")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap.")
    preview_prompts: int = Field(4, ge=1, description="Prompts shown as frame strips and animated previews.")


class Params(_Section):
    """All of params.yaml."""

    world: WorldConfig = Field(default_factory=WorldConfig, description=WorldConfig.__doc__)
    base_model: BaseModelConfig = Field(
        default_factory=BaseModelConfig, description=BaseModelConfig.__doc__
    )
    base_samples: BaseSamplesConfig = Field(
        default_factory=BaseSamplesConfig, description=BaseSamplesConfig.__doc__
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig, description=IngestConfig.__doc__)
    cache: CacheConfig = Field(default_factory=CacheConfig, description=CacheConfig.__doc__)
    train: TrainConfig = Field(default_factory=TrainConfig, description=TrainConfig.__doc__)
    scorer_model: ScorerModelConfig = Field(default_factory=ScorerModelConfig, description=ScorerModelConfig.__doc__)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description=EvaluateConfig.__doc__)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig,
                                               description=OrchestrationConfig.__doc__)
    study: StudyConfig = Field(default_factory=StudyConfig, description=StudyConfig.__doc__)
    video_world: VideoWorldConfig = Field(default_factory=VideoWorldConfig, description=VideoWorldConfig.__doc__)
    video_base: VideoBaseConfig = Field(default_factory=VideoBaseConfig, description=VideoBaseConfig.__doc__)
    video_features: VideoFeaturesConfig = Field(default_factory=VideoFeaturesConfig,
                                                description=VideoFeaturesConfig.__doc__)
    video: VideoConfig = Field(default_factory=VideoConfig, description=VideoConfig.__doc__)
    video_study: VideoStudyConfig = Field(default_factory=VideoStudyConfig,
                                        description=VideoStudyConfig.__doc__)

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, data: Any) -> Any:
        return resolve_auto(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        """Rules that span sections: checked at load, before any stage runs."""
        if self.base_samples.prompts > self.world.eval_prompts:
            raise ValueError(
                f"base_samples.prompts={self.base_samples.prompts} exceeds "
                f"world.eval_prompts={self.world.eval_prompts}"
            )
        if len(set(self.evaluate.scorers)) != len(self.evaluate.scorers):
            raise ValueError(f"evaluate.scorers lists a scorer twice: {self.evaluate.scorers}")
        models = self.evaluate.models.model_dump()
        if "pickscore_x100" in self.evaluate.scorers and not self.scorer_model.enabled:
            for key in ("pickscore_model", "pickscore_processor"):
                if str(models[key] or "").rstrip("/") == EMBEDDED_PICKSCORE:
                    raise ValueError(
                        f"evaluate.models.{key}={models[key]} is written by the scorer_model stage, which "
                        "scorer_model.enabled=false turns off: enable it, or set the key to auto (the released "
                        "PickScore, yuvalkirstain/PickScore_v1) or to a folder of PickScore weights")
        if self.scorer_model.enabled and self.ingest.source.rstrip("/") != EMBEDDED_PREFERENCES:
            raise ValueError(
                f"scorer_model.enabled=true trains on the embedded world's pairs and true utilities, but "
                f"ingest.source={self.ingest.source!r} is another preference set: set scorer_model.enabled "
                "to auto (or false), and evaluate.models.pickscore_* to auto (the released PickScore) or its weights")
        bad = sorted(set(self.video.train_overrides) - set(TrainConfig.model_fields))
        if bad:
            raise ValueError(f"video.train_overrides: unknown train keys {bad}")
        # the overridden values validate as train.* values (video_train_config below applies them)
        TrainConfig(**{**self.train.model_dump(), **self.video.train_overrides})
        if self.video.frames != self.video_world.frames and self.video.source.startswith(L.VIDEO_WORLD):
            raise ValueError(f"video.frames={self.video.frames} but the embedded video world makes "
                             f"video_world.frames={self.video_world.frames}-frame clips")
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


def _nearest(word: str, choices: list[str]) -> str | None:
    """The choice a typo most likely meant (difflib ratio >= 0.6), if any."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return match[0] if match else None


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed(Params, e["loc"])
            near = _nearest(str(e["loc"][-1]), allowed.split(", ")) if allowed else None
            hint = f" did you mean {'.'.join([*map(str, e['loc'][:-1]), near])}?" if near else ""
            lines.append(f"  {key}: unknown key;{hint} allowed keys here: {allowed}")
        else:
            hint = ""
            if e["type"] == "literal_error" and isinstance(e.get("input"), str):
                near = _nearest(e["input"], re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", ""))))
                hint = f"; did you mean {near!r}?" if near else ""
            # a cross-field check's input is a whole section (or the whole params): its message names the
            # fields; echoing the input would bury it (8,600 characters for the root)
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) or len(repr(got)) > 200 else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {'params (cross-field)' if key == '<root>' else key}: {msg}{shown}{hint}")
    return "\n".join(lines)


def parse_params(data: dict[str, Any] | None, source: str = "<params>") -> Params:
    """Validate a params mapping; raise ConfigError naming ``source`` and each bad key."""
    try:
        params = Params.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None
    for section in STUDY_SECTIONS:
        _check_variants(params, source, section)
    return params


STUDY_OWNED = ("train.seed", "train.rounds")
STUDY_SHARED_SECTIONS = ("base_model", "scorer_model")  # sections study.shared may pin (no train.* reads them)


STUDY_SECTIONS = ("study", "video_study")


def variant_params(params: Params, variant: StudyVariant, seed: int, rounds: int, section: str = "study"
                   ) -> dict[str, Any]:
    """The dotted overrides of one study run: <section>.shared's pins, <section>.common, the variant's train.* keys,
    its lr, the seed and the rounds (later ones win); a video study run also names its one arm (its train.loss)."""
    st = getattr(params, section)
    over = dict(st.shared) | dict(st.common) | dict(variant.overrides)
    if variant.lr is not None:
        over["train.lr"] = variant.lr
    over["train.seed"], over["train.rounds"] = seed, rounds
    if section == "video_study":
        over["video.arms"] = [over.get("train.loss", params.train.loss)]
    return over


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a params mapping with dotted keys set (as `dvc exp run -S key=value`)."""
    import copy

    out = copy.deepcopy(data)
    for key, value in overrides.items():
        cur = out
        *parents, leaf = key.split(".")
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[leaf] = value
    return out


def _check_variants(params: Params, source: str, section: str = "study") -> None:
    """Every trained variant's overrides (<section>.shared, <section>.common, then its own) applied to the params must
    validate, or fail with the dotted key. A video study's variant may not set a train.* key that
    video.train_overrides replaces (the override would win, silently)."""
    st = getattr(params, section)
    base = params.model_dump(exclude=set(STUDY_SECTIONS))
    rule = (f"may override only train.* keys other than {', '.join(STUDY_OWNED)} (shared stages, the evaluation "
            "set, seeds and rounds are the study's)")
    bad = {k for k in st.common if not k.startswith("train.") or k in STUDY_OWNED}
    lines = [f"  {section}.common.{k}: the study {rule}" for k in sorted(bad)]
    bad_shared = {k for k in st.shared if k.split(".", 1)[0] not in STUDY_SHARED_SECTIONS or "." not in k}
    lines += [f"  {section}.shared.{k}: may pin only keys of the shared stages' sections "
              f"({', '.join(s + '.*' for s in STUDY_SHARED_SECTIONS)})" for k in sorted(bad_shared)]
    bad |= bad_shared
    for name, v in st.variants.items():
        where = f"{section}.variants.{name}.overrides"
        own_bad = [k for k in v.overrides if not k.startswith("train.") or k in STUDY_OWNED]
        lines += [f"  {where}.{k}: a variant {rule}" for k in own_bad]
        if not v.train:
            continue
        over = {k: x for k, x in variant_params(params, v, st.seeds[0], st.rounds, section).items()
                if k not in bad and k not in own_bad}
        if v.pending:  # a placeholder may name keys another branch is adding: check the ones that exist
            over = {k: x for k, x in over.items() if k.split(".", 1)[-1] in TrainConfig.model_fields}
        try:
            Params.model_validate(apply_overrides(base, over))
        except ValidationError as err:
            for e in err.errors():
                key = ".".join(str(p) for p in e["loc"]) or "<root>"
                got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"  # not a whole section
                what = ("unknown key; allowed keys here: " + _allowed(Params, e["loc"])
                        if e["type"] == "extra_forbidden" else f"{e['msg'].removeprefix('Value error, ')}{got}")
                first = [f"{section}.{f}" for f in ("shared", "common") if getattr(st, f)]
                lines.append(f"  {where}.{key}: {what}" + (f" ({' and '.join(first)} applied first)" if first
                                                           else ""))
    if lines:
        raise ConfigError("\n".join([f"{source}: invalid {section} variants"] + lines))


def video_study_conflicts(params: Params) -> list[str]:
    """What keeps the video study from running as planned: a train.* key a variant (or video_study.common) sets
    that video.train_overrides replaces for every video round (the variant's value would never reach one), and a
    train_overrides key the study sets per run (seed, rounds). Checked when the video study runs, not at load: a
    preset that tunes video.train_overrides stays valid for everything else."""
    st, hidden = params.video_study, set(params.video.train_overrides)
    lines = []
    for where, keys in [("common", st.common)] + [(f"variants.{n}.overrides", v.overrides)
                                                 for n, v in st.variants.items()]:
        lines += [f"video_study.{where}.{k}: video.train_overrides sets {k.split('.', 1)[1]} for every video "
                  "round, so this value would never reach one" for k in sorted(keys) if k.split(".", 1)[1] in hidden]
    lines += [f"video.train_overrides.{k}: the video study sets it per run (video_study.seeds / rounds)"
              for k in ("seed", "rounds") if k in hidden]
    return lines


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


def video_train_config(params: Params) -> TrainConfig:
    """What the video rounds train with: the train section with video.train_overrides applied (rounds per arm =
    train.rounds unless overridden)."""
    return TrainConfig(**{**params.train.model_dump(), **params.video.train_overrides})
