"""Stage `scorer_model`: the embedded world's PickScore (CLIP contrastive, then PickScore's pair loss)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, web: Path = Path(L.WORLD_WEB), ingest_dir: Path = Path(L.INGEST),
        truth: Path = Path(L.WORLD_PAIRS_TRUTH), out: Path = Path(L.PICKSCORE),
        metrics: Path = Path(L.metrics("scorer_model"))) -> dict:
    from ..evaluation.pickscore_train import run_scorer_model

    return run_scorer_model(params.scorer_model, params.world.image_size, web, ingest_dir, truth, out, metrics)
