"""Stage `video_report`: the video report (Markdown and self-contained HTML with frame strips and previews)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..evaluation.video_generate import VideoEvalError

    return {VideoEvalError: 2}


def run(params: Params, clips: list[Path], eval_dir: Path = Path(L.VIDEO_EVAL),
        out: Path = Path(L.VIDEO_REPORTS)) -> dict:
    from ..reports.video_report import run_video_report

    return run_video_report(params, eval_dir, clips, out, root=Path("."))  # the stage runs from the project root
