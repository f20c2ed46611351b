"""Stage `report`: reports/report.md and report.html regenerated from tracked outputs only."""

from __future__ import annotations

from pathlib import Path

from ..config import Params


def run(params: Params, root: Path = Path(".")) -> dict:
    from ..reports.build import run_report

    return run_report(params, root)
