"""Stage `video_select` (a video arm's round k, step 1): the reference checkpoint drawn from the arm's bank."""

from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..layout import video_layout
from ._video_arm import UnknownArm, arm_config


def expected() -> dict:
    return {UnknownArm: 2}


def run(params: Params, round_k: int, arm: str = "seppo", root: Path = Path(".")) -> dict:
    from ..training.selection import run_select

    return run_select(arm_config(params, arm), round_k, video_layout(arm, root))
