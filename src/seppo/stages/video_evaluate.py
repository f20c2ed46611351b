"""Stage `video_evaluate`: every video checkpoint's clips scored against the real clips (utility, PSNR, SSIM,
LPIPS, FID, FVD) with CIs."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..evaluation.video_generate import VideoEvalError

    return {VideoEvalError: 2}


def run(params: Params, clips: list[Path], out: Path = Path(L.VIDEO_EVAL),
        metrics: Path = Path(L.metrics("video_eval"))) -> dict:
    from ..evaluation.video_stage import run_video_evaluate

    return run_video_evaluate(params.video, clips, out, metrics)
