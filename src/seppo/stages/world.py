"""Stage `world`: generate Shapeland, the embedded preference world (shards, prompts, web corpus, utility check)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def run(params: Params, out: Path = Path(L.WORLD), metrics: Path = Path(L.metrics("world"))) -> dict:
    from ..world.stage import run_world

    return run_world(params.world, out, metrics)
