"""Stage `video_eval_generate`: one video checkpoint's evaluation clips (once per prompt and seed)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import timing_path


def expected() -> dict:
    from ..evaluation.video_generate import VideoEvalError
    from ..models.pipeline import ModelNotFound

    return {VideoEvalError: 2, ModelNotFound: 2}


def run(params: Params, checkpoint: Path, name: str, out: Path | None = None, timing: Path | None = None) -> dict:
    from ..evaluation.video_generate import run_video_eval_generate

    return run_video_eval_generate(params.video, checkpoint, name, out or Path(L.video_eval_clips(name)),
                                   timing or timing_path(L.metrics(f"video_eval_{name}")))
