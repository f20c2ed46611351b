"""Stage `video_refsamples` (a video arm's round k, step 2): the selected checkpoint generates reference clips."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import video_layout
from ._video_arm import UnknownArm, arm_config


def expected() -> dict:
    return {UnknownArm: 2}


def run(params: Params, round_k: int, arm: str = "seppo", root: Path = Path("."),
        cache_dir: Path = Path(L.VIDEO_CACHE)) -> dict:
    from ..training.reference_samples import run_refsamples

    return run_refsamples(arm_config(params, arm), round_k, video_layout(arm, root), root / cache_dir)
