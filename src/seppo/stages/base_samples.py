"""Stage `base_samples`: theta_0 sampled on held-out prompts: a captioned grid and ground-truth utilities."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, model: Path = Path(L.BASE_MODEL), prompts: Path = Path(L.WORLD_PROMPTS),
        world_metrics: Path = Path(L.metrics("world")), out: Path = Path(L.BASE_SAMPLES),
        metrics: Path = Path(L.metrics("base_samples"))) -> dict:
    from ..reports.base_samples import run_base_samples

    return run_base_samples(params.base_samples, model, prompts, world_metrics, out, metrics)
