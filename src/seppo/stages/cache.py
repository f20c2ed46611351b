"""Stage `cache`: winners (and losers) encoded to VAE latents and captions to text embeddings, once."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, ingest_dir: Path = Path(L.INGEST), model: Path = Path(L.BASE_MODEL),
        out: Path = Path(L.CACHE), metrics: Path = Path(L.metrics("cache"))) -> dict:
    from ..data.cache import run_cache

    return run_cache(params.cache, ingest_dir, model, out, metrics)
