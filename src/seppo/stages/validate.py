"""Stage `validate`: the Great Expectations checkpoint on the ingested rows; fails above the quarantine limit."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params


def expected() -> dict:
    from ..data.expectations import DataQualityError

    return {DataQualityError: 1}


def run(params: Params, ingest_dir: Path = Path(L.INGEST), docs: Path = Path(L.DATA_DOCS),
        results: Path = Path(L.EXPECTATIONS), metrics: Path = Path(L.metrics("validate"))) -> dict:
    from ..data.expectations import run_validate

    return run_validate(params.ingest, ingest_dir, docs, results, metrics)
