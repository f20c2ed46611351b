"""Stage `video_train` (a video arm's round k, step 3): its theta_{k-1} trained (video.trainable: motion modules
or all)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import video_layout
from ._video_arm import UnknownArm, arm_config


def expected() -> dict:
    from ..training.trainer import TrainingDiverged

    return {TrainingDiverged: 1, UnknownArm: 2}


def run(params: Params, round_k: int, arm: str = "seppo", root: Path = Path("."),
        cache_dir: Path = Path(L.VIDEO_CACHE)) -> dict:
    from ..training.trainer import run_train

    return run_train(arm_config(params, arm), round_k, video_layout(arm, root), root / cache_dir,
                     params.video.trainable)
