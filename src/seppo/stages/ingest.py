"""Stage `ingest`: read the preference source shard by shard; keep winners, quarantine bad rows with reasons."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..locations import SourceError

    return {SourceError: 2}


def run(params: Params, out: Path = Path(L.INGEST), metrics: Path = Path(L.metrics("ingest"))) -> dict:
    from ..data.ingest import run_ingest

    return run_ingest(params.ingest, out, metrics)
