"""Stage `refsamples` (round k, step 2): the selected checkpoint generates the round's reference samples."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import Layout


def run(params: Params, round_k: int, root: Path = Path("."), cache_dir: Path = Path(L.CACHE)) -> dict:
    from ..training.reference_samples import run_refsamples

    return run_refsamples(params.train, round_k, Layout(root), root / cache_dir, params.evaluate.models.model_dump())
