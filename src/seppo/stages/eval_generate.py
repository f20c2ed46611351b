"""Stage `eval_generate`: one checkpoint's evaluation images (once per prompt and seed)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L
from ..config import Params
from ..layout import timing_path


def run(params: Params, checkpoint: Path, name: str, out: Path | None = None,
        world_prompts: Path = Path(L.WORLD_PROMPTS), timing: Path | None = None) -> dict:
    from ..evaluation.generate import run_eval_generate

    return run_eval_generate(params.evaluate, checkpoint, name, out or Path(L.eval_images(name)), world_prompts,
                             timing or timing_path(L.metrics(f"eval_{name}")))
