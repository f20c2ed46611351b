"""Progress bars with ETA for the stages that run for more than a few seconds (tqdm).

One place for how they look: on stderr, refreshed at most every few seconds (DVC and Prefect
capture the output, so a bar is a line every few seconds, not a flood), and shown by the main
process only when a stage is launched on several processes.
"""

from __future__ import annotations

import os

MIN_INTERVAL_S = 5.0


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def progress(total: int, desc: str, unit: str = "it", **kwargs):
    """A tqdm bar (use ``.update(n)``, ``.set_postfix(...)``, ``.close()`` or ``with``) with rate and ETA."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, mininterval=MIN_INTERVAL_S, dynamic_ncols=True,
                disable=not _main_process(), **kwargs)
