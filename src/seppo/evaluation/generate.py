"""Images for evaluation, generated once per (checkpoint, prompt, seed) and stored for every scorer."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import EvaluateConfig
from ..io_utils import atomic_dir, write_json
from ..models.pipeline import generate, load_pipeline, prompt_seed
from .prompts import load_prompts
from .. import layout as L


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def run_eval_generate(cfg: EvaluateConfig, checkpoint: Path, name: str, out: Path,
                      world_prompts: Path = Path(L.WORLD_PROMPTS), timing: Path | None = None) -> dict:
    """Images of one checkpoint; launched on P processes, each generates every P-th image and the
    main process writes them all (each image has its own seed, so P does not change them).

    settings.json holds only what determines the images, so a re-run (after a kill, or on more
    processes) rewrites it byte for byte; seconds and the process count go to ``timing``."""
    import torch

    from ..distributed import process_state, split_map

    rank, world, main = process_state()
    prompts = load_prompts(cfg, world_prompts)
    rows = [(pid, p, s) for s in cfg.seeds for pid, p in zip(prompts.prompt_id, prompts.prompt)]
    pipe = load_pipeline(checkpoint)
    if torch.cuda.is_available():
        pipe.to(f"cuda:{rank % torch.cuda.device_count()}", torch.float16)
    t0 = time.perf_counter()
    images = split_map(len(rows), lambda idx: generate(
        pipe, [rows[i][1] for i in idx], [rows[i][2] for i in idx], cfg.sampling, cfg.batch_size,
        progress=f"eval-generate {name}"), np.stack)
    seconds = time.perf_counter() - t0
    if not main:
        return {"process": rank, "images": len(range(rank, len(rows), world))}
    revision = {}
    prov = checkpoint / "seppo_round.json"
    if prov.exists():
        revision = {"round": json.loads(prov.read_text()).get("round")}
    settings = {"checkpoint": str(checkpoint), "name": name, "prompts": cfg.prompts, "split": cfg.split,
                "n_prompts": len(prompts), "seeds": cfg.seeds, **cfg.sampling.model_dump(),
                "seed_rule": "sha256(seed, prompt) per image", **revision,
                "images": len(rows)}
    with atomic_dir(out) as tmp:
        pd.DataFrame({
            "prompt_id": [r[0] for r in rows], "prompt": [r[1] for r in rows], "seed": [r[2] for r in rows],
            "sample_seed": [prompt_seed(r[1], r[2]) for r in rows], "png": [_png(im) for im in images],
        }).to_parquet(tmp / "images.parquet", index=False)
        write_json(tmp / "settings.json", settings)
    figures = {"images": len(rows), "processes": world, "seconds": round(seconds, 2),
               "images_per_s": round(len(rows) / seconds, 3) if seconds > 0 else None}
    if timing is not None:
        write_json(timing, figures)
    return {**settings, "timing": figures}
