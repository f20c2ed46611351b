"""Clips for the video evaluation, generated once per (checkpoint, prompt, seed) and stored for every metric.

Output folder (built aside and swapped in, so a kill leaves the old folder or the new, never a mix):
  clips.parquet   prompt_id, prompt, seed, sample_seed, png: ONE lossless PNG per clip, its frames side by side
                  (H x F*W x 3, frame 0 on the left); `decode_strip` reads it back bit for bit
  settings.json   only what determines the clips (checkpoint, name, prompts, seeds, sampler, steps, guidance,
                  frames, the seed rule): a re-run writes the same bytes
Wall-clock seconds and clips/s go to a separate timing file, which nothing downstream reads.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import VideoConfig
from ..io_utils import atomic_dir, write_json
from ..models.pipeline import load_pipeline, prompt_seed
from ..models.recipe import recipe_frame_correlation
from ..models.video_pipeline import generate_clips

PROMPT_COLUMNS = ("prompt_id", "caption")


class VideoEvalError(ValueError):
    """Inputs of the video evaluation that do not fit (a missing column, rows that differ, a caption with no
    real clip): the message names the file, folder or caption."""


def strip_of(clip: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) -> (H, F*W, 3): the frames side by side, frame 0 on the left."""
    f, h, w, c = clip.shape
    return np.ascontiguousarray(np.asarray(clip).transpose(1, 0, 2, 3).reshape(h, f * w, c))


def encode_strip(clip: np.ndarray) -> bytes:
    """One lossless PNG of a (F, H, W, 3) uint8 clip's frames side by side."""
    from PIL import Image

    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError(f"expected a uint8 clip (F, H, W, 3), got {clip.dtype} {clip.shape}")
    buf = io.BytesIO()
    Image.fromarray(strip_of(clip)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def decode_strip(png: bytes, frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of a PNG strip written by `encode_strip`."""
    from PIL import Image

    strip = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    h, total, _ = strip.shape
    if frames < 1 or total % frames:
        raise ValueError(f"a {total} px wide strip does not split into {frames} frames")
    return np.ascontiguousarray(strip.reshape(h, frames, total // frames, 3).transpose(1, 0, 2, 3))


def load_eval_clips(folder: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(the clips table, clips (N, F, H, W, 3) uint8 in the table's order) of a video-eval-generate folder."""
    folder = Path(folder)
    for f in ("clips.parquet", "settings.json"):
        if not (folder / f).exists():
            raise VideoEvalError(f"{folder}: no {f} (not a video-eval-generate folder)")
    frames = int(json.loads((folder / "settings.json").read_text())["frames"])
    table = pd.read_parquet(folder / "clips.parquet")
    clips = [decode_strip(b, frames) for b in table.png]
    return table, (np.stack(clips) if clips else np.zeros((0, frames, 1, 1, 3), np.uint8))


def load_video_prompts(cfg: VideoConfig) -> pd.DataFrame:
    """(prompt_id, prompt): the first ``eval_prompts`` rows of ``prompts`` (split == 'eval' when it has a split)."""
    path = Path(cfg.prompts)
    if not path.is_file():
        raise VideoEvalError(f"video.prompts={path}: file not found (a parquet with columns "
                             f"{', '.join(PROMPT_COLUMNS)}, split optional)")
    t = pd.read_parquet(path)
    missing = [c for c in PROMPT_COLUMNS if c not in t.columns]
    if missing:
        raise VideoEvalError(f"video.prompts={path}: missing column(s) {missing}; found {list(t.columns)}")
    if "split" in t.columns:
        t = t[t["split"] == "eval"]
    t = t.rename(columns={"caption": "prompt"})[["prompt_id", "prompt"]].head(cfg.eval_prompts)
    if not len(t):
        raise VideoEvalError(f"video.prompts={path}: no evaluation prompts (split == 'eval')")
    if t.prompt_id.duplicated().any():
        raise VideoEvalError(f"video.prompts={path}: prompt_id {t.prompt_id[t.prompt_id.duplicated()].iloc[0]!r} "
                             "appears twice")
    return t.assign(prompt_id=t.prompt_id.astype(str), prompt=t.prompt.astype(str)).reset_index(drop=True)


def run_video_eval_generate(cfg: VideoConfig, checkpoint: Path, name: str, out: Path,
                            timing: Path | None = None) -> dict:
    """Clips of one video checkpoint (an AnimateDiffPipeline folder) for every (eval prompt, seed); launched on P
    processes (`evaluate.accelerate_config`), each generates every P-th clip and the main process writes them all
    (each clip has its own seed, so P does not change them)."""
    import torch

    from ..distributed import process_state, split_map

    rank, world, main = process_state()
    checkpoint = Path(checkpoint)
    prompts = load_video_prompts(cfg)
    rows = [(pid, p, s) for s in cfg.eval_seeds for pid, p in zip(prompts.prompt_id, prompts.prompt)]
    pipe = load_pipeline(checkpoint)
    if type(pipe).__name__ != "AnimateDiffPipeline":
        raise VideoEvalError(f"{checkpoint}: a {type(pipe).__name__} folder, not a video checkpoint "
                             "(an AnimateDiffPipeline folder)")
    if torch.cuda.is_available():
        pipe.to(f"cuda:{rank % torch.cuda.device_count()}", torch.float16)
    s = cfg.sampling
    t0 = time.perf_counter()
    corr = recipe_frame_correlation(checkpoint)
    clips = split_map(len(rows), lambda idx: generate_clips(
        pipe, [rows[i][1] for i in idx], [rows[i][2] for i in idx], s, cfg.frames, cfg.batch_size,
        progress=f"video-eval-generate {name}", frame_corr=corr), np.stack)
    seconds = time.perf_counter() - t0
    if not main:
        return {"process": rank, "clips": len(range(rank, len(rows), world))}
    revision = {}
    prov = checkpoint / "seppo_round.json"
    if prov.exists():  # a trained round names its round, loss and reference checkpoint
        info = json.loads(prov.read_text())
        revision = {k: info[k] for k in ("round", "loss_type", "reference") if k in info}
    settings = {"checkpoint": str(checkpoint), "name": name, "prompts": cfg.prompts, "n_prompts": len(prompts),
                "seeds": list(cfg.eval_seeds), "sampler": s.sampler, "steps": s.steps, "guidance": s.guidance,
                "frames": cfg.frames, "seed_rule": "sha256(seed, prompt) per clip", "clips": len(rows),
                "height": int(clips.shape[2]), "width": int(clips.shape[3]), "frame_noise_correlation": corr,
                **revision}
    with atomic_dir(out) as tmp:
        pd.DataFrame({
            "prompt_id": [r[0] for r in rows], "prompt": [r[1] for r in rows], "seed": [r[2] for r in rows],
            "sample_seed": [prompt_seed(r[1], r[2]) for r in rows], "png": [encode_strip(c) for c in clips],
        }).to_parquet(tmp / "clips.parquet", index=False)
        write_json(tmp / "settings.json", settings)
    figures = {"clips": len(rows), "processes": world, "seconds": round(seconds, 2),
               "clips_per_s": round(len(rows) / seconds, 3) if seconds > 0 else None}
    if timing is not None:
        write_json(timing, figures)
    return {**settings, "timing": figures}
