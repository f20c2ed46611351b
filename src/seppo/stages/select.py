"""Stage `select` (round k, step 1): the reference checkpoint drawn from the bank theta_0..theta_{k-1}, recorded."""

from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..layout import Layout


def run(params: Params, round_k: int, root: Path = Path(".")) -> dict:
    from ..training.selection import run_select

    return run_select(params.train, round_k, Layout(root))
