"""Stage `video_cache`: the winning (and losing) clips encoded to latents (n, C, F, h, w), captions to text
embeddings, once."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, ingest_dir: Path = Path(L.VIDEO_INGEST), model: Path = Path(L.VIDEO_BASE),
        out: Path = Path(L.VIDEO_CACHE), metrics: Path = Path(L.metrics("video_cache"))) -> dict:
    from ..data.video_cache import run_video_cache

    return run_video_cache(params.video, ingest_dir, model, out, metrics)
