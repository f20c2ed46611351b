"""Stage `video_ingest`: video.source (and video.losers) read; every clip kept or quarantined with its reason."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..data.video_ingest import VideoSourceError

    return {VideoSourceError: 1}


def run(params: Params, out: Path = Path(L.VIDEO_INGEST), metrics: Path = Path(L.metrics("video_ingest"))) -> dict:
    from ..data.video_ingest import run_video_ingest

    return run_video_ingest(params.video, out, metrics)
