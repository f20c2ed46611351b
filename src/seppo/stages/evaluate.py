"""Stage `evaluate`: every checkpoint's images scored by every configured scorer; means, CIs, win rates."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..evaluation.scorers import MissingWeights

    return {MissingWeights: 2}


def run(params: Params, images: list[Path], out: Path = Path(L.EVAL), metrics: Path = Path(L.metrics("eval")),
        plots: Path = Path(L.EVAL_PLOTS)) -> dict:
    from ..evaluation.stage import run_evaluate

    return run_evaluate(params.evaluate, images, out, metrics, plots)
