"""Stage `video_base`: theta_0 of the video arms: the embedded AnimateDiff motion adapter pretrained on the video
world's web clips, or video_base.source (a MotionAdapter) composed with models/base (docs/video.md)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..io_utils import write_json


def run(params: Params, base: Path = Path(L.BASE_MODEL), web: Path = Path(L.VIDEO_WORLD_WEB),
        out: Path = Path(L.VIDEO_BASE), metrics: Path = Path(L.metrics("video_base"))) -> dict:
    from ..models.video_pretrain import run_video_base

    result = run_video_base(params.video_base, base, web, out)
    write_json(metrics, result)
    return {k: v for k, v in result.items() if k != "log"}  # the pretraining log is in the metrics file
