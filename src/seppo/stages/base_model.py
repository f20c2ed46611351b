"""Stage `base_model`: theta_0, pretrained on the embedded web corpus or copied from base_model.source."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, web: Path = Path(L.WORLD_WEB), out: Path = Path(L.BASE_MODEL),
        metrics: Path = Path(L.metrics("base_model"))) -> dict:
    from ..models.stage import run_base_model

    return run_base_model(params.base_model, web, out, metrics)
