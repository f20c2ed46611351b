"""Stage `video_features`: the embedded FID / FVD feature networks, trained on fresh video-world renders, with the
sanity table (identical, clean, frozen, flickering, shaking, noisy sets vs clean clips) in its metrics."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, out: Path = Path(L.VIDEO_FEATURES),
        metrics: Path = Path(L.metrics("video_features"))) -> dict:
    from ..evaluation.feature_nets import run_video_features

    w = params.video_world
    return run_video_features(params.video_features, w.image_size, w.frames, out, metrics)
