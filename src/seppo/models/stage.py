"""The ``base_model`` stage: theta_0 as a diffusers folder, trained here or copied from a source."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import BaseModelConfig
from ..io_utils import atomic_dir, write_json
from ..layout import timing_path


def run_base_model(cfg: BaseModelConfig, web_dir: Path, out_dir: Path, metrics_path: Path) -> dict:
    """theta_0 into ``out_dir``; metrics hold no wall-clock figures (those go to the timing file)."""
    timing: dict = {}
    t0 = time.perf_counter()
    if cfg.source == "embedded":
        from .pretrain import pretrain_base_model

        summary = pretrain_base_model(cfg, web_dir, out_dir, timing)
    else:
        from .pipeline import load_pipeline

        pipe = load_pipeline(cfg.source, cfg.revision)
        summary = {"source": cfg.source, "revision": cfg.revision}
        with atomic_dir(out_dir) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            (tmp / "seppo_provenance.json").write_text(
                json.dumps({"params": cfg.model_dump(), "summary": summary}, indent=2) + "\n"
            )
    timing.setdefault("seconds_total", round(time.perf_counter() - t0, 1))
    write_json(metrics_path, summary)
    write_json(timing_path(metrics_path), timing)
    return summary
