"""What a base model folder records about how this project pretrained it (seppo_provenance.json)."""

from __future__ import annotations

import json
from pathlib import Path


def recipe_noise_offset(base_dir: Path) -> float:
    """The noise offset theta_0 was pretrained with (its seppo_provenance.json); 0 for a model this project did
    not pretrain (a copied SD checkpoint) or without that record. Fine-tuning follows it (train.noise_offset
    auto, the video base model): another noise distribution than pretraining would confound every comparison."""
    record = Path(base_dir) / "seppo_provenance.json"
    if not record.exists():
        return 0.0
    params = json.loads(record.read_text()).get("params", {})
    return float(params.get("noise_offset", 0.0)) if params.get("source") == "embedded" else 0.0


def recipe_frame_correlation(model_dir: Path) -> float:
    """The frame noise correlation a video model was pretrained with (its seppo_provenance.json), 0 without that
    record (a released motion adapter: independent noise per frame, as AnimateDiff samples). Sampling and
    fine-tuning follow it, as they follow the noise offset."""
    record = Path(model_dir) / "seppo_provenance.json"
    if not record.exists():
        return 0.0
    return float(json.loads(record.read_text()).get("params", {}).get("frame_noise_correlation", 0.0))


def frame_correlated(noise, corr: float, generator):
    """Noise (B, C, F, h, w) whose frames share a component: sqrt(corr) * shared + sqrt(1 - corr) * own, so every
    frame stays N(0, 1) and two frames correlate by ``corr`` (the mixed noise prior of PYoCo, Ge et al. 2023).
    The shared draw comes after every other draw, so corr = 0 returns ``noise`` and changes no earlier draw."""
    if corr <= 0:
        return noise
    import math

    import torch

    shared = torch.randn((noise.shape[0], noise.shape[1], 1, *noise.shape[3:]), generator=generator)
    return math.sqrt(corr) * shared + math.sqrt(1.0 - corr) * noise
