"""Stage `train` (round k, step 3): theta_{k-1} trained against the selected reference; theta_k saved."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import Layout


def expected() -> dict:
    from ..training.trainer import TrainingDiverged

    return {TrainingDiverged: 1}


def run(params: Params, round_k: int, root: Path = Path("."), cache_dir: Path = Path(L.CACHE)) -> dict:
    from ..training.trainer import run_train

    return run_train(params.train, round_k, Layout(root), root / cache_dir)
