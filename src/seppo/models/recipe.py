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
