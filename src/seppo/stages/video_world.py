"""Stage `video_world`: Shapeland clips for the text-to-video path: winners / losers in the video ingest's folder
format, held-out clean clips for the video metrics, prompts and the pairs' truth (docs/video.md)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..io_utils import write_json


def run(params: Params, out: Path = Path(L.VIDEO_WORLD), metrics: Path = Path(L.metrics("video_world"))) -> dict:
    from ..world.video_stage import run_video_world

    result = run_video_world(params.video_world, out)
    write_json(metrics, result)
    return result
