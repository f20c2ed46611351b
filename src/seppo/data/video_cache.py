"""The video cache stage: VAE latents of the winning (and losing) clips, frame by frame, and caption embeddings.

The same layout as the image cache (seppo.data.cache), so `LatentCache` and the trainer read it unchanged; only
the latents carry a frame axis, (n, C, F, h, w), scaled by the VAE scaling factor (AnimateDiff's layout):
  <out>/winners/shard-NNNNN.safetensors   {"latents": (n, C, F, h, w)}
  <out>/winners/index.parquet             row -> winner_uid (= clip_id), caption_id, shard, offset
  <out>/losers/...                        the losing clip of the same pair (winner_uid = its pair's clip_id)
  <out>/text/..., <out>/manifest.json     as the image cache
Frames are centre-cropped to a square and resized (bilinear) to the model's native size when they differ.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import VideoConfig
from ..io_utils import atomic_dir, write_json
from ..layout import timing_path
from .cache import default_resolution, load_vae
from .video_ingest import load_clips

SHARD_CLIPS = 512


def fit_frames(clips: np.ndarray, resolution: int) -> np.ndarray:
    """(N, F, H, W, 3) uint8 -> (N, F, r, r, 3): centre crop to a square, bilinear resize when the size differs."""
    n, f, h, w, _ = clips.shape
    if h == w == resolution:
        return clips
    from PIL import Image

    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    out = np.empty((n, f, resolution, resolution, 3), np.uint8)
    for i in range(n):
        for j in range(f):
            im = Image.fromarray(clips[i, j, y0:y0 + side, x0:x0 + side])
            out[i, j] = np.asarray(im.resize((resolution, resolution), Image.Resampling.BILINEAR))
    return out


def _encode(vae, clips: np.ndarray, batch: int = 16):
    import torch

    from ..models.video_pretrain import clip_latents

    parts = [clip_latents(vae, clips[i:i + batch]) for i in range(0, len(clips), batch)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _write_table(out: Path, latents, uids: list[str], caption_ids: list[int], extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    index = []
    for s, lo in enumerate(range(0, len(uids), SHARD_CLIPS)):
        hi = min(lo + SHARD_CLIPS, len(uids))
        save_file({"latents": latents[lo:hi].float().contiguous()}, str(out / f"shard-{s:05d}.safetensors"))
        index += [{"shard": s, "offset": i - lo} for i in range(lo, hi)]
    df = pd.DataFrame({"winner_uid": uids, **(extra or {}), "caption_id": caption_ids,
                       "shard": [r["shard"] for r in index], "offset": [r["offset"] for r in index]})
    df.to_parquet(out / "index.parquet", index=False)


def run_video_cache(cfg: VideoConfig, ingest_dir: Path, model_dir: Path, out: Path, metrics: Path) -> dict:
    """Encode the ingested winners (and, when ingested, the losers of the same pairs) with theta_0's VAE."""
    import torch
    from safetensors.torch import save_file

    from ..models.conditioning import TextEncoders

    t0 = time.perf_counter()
    ingest_dir, model_dir = Path(ingest_dir), Path(model_dir)
    vae, text = load_vae(model_dir), TextEncoders(model_dir)
    resolution = default_resolution(model_dir)
    tables = {"winners": load_clips(ingest_dir / "winners", with_ids=True)}
    if (ingest_dir / "losers" / "clips.parquet").exists():
        tables["losers"] = load_clips(ingest_dir / "losers", with_ids=True)
    unique = sorted({c for caps, _, _ in tables.values() for c in caps})
    cid = {c: i for i, c in enumerate(unique)}
    counts, shape = {}, None
    with atomic_dir(out) as tmp:
        w_caps, w_clips, w_ids = tables["winners"]
        if len(w_ids) == 0:
            raise ValueError(f"{ingest_dir / 'winners'}: no clip was kept by the ingest: nothing to train on")
        z = _encode(vae, fit_frames(w_clips, resolution))
        shape = list(z.shape[1:])
        _write_table(tmp / "winners", z, w_ids, [cid[c] for c in w_caps])
        counts["winners"] = len(w_ids)
        if "losers" in tables:
            l_caps, l_clips, l_ids = tables["losers"]
            paired = set(w_ids)
            keep = [i for i, u in enumerate(l_ids) if u in paired]  # a loser whose winner was quarantined: no pair
            zl = _encode(vae, fit_frames(l_clips[keep], resolution)) if keep else torch.zeros((0, *shape))
            _write_table(tmp / "losers", zl, [l_ids[i] for i in keep], [cid[l_caps[i]] for i in keep],
                         {"loser_uid": [l_ids[i] for i in keep]})
            counts["losers"] = len(keep)
            counts["losers_without_winner"] = len(l_ids) - len(keep)
        (tmp / "text").mkdir()
        hidden, pooled = text.encode(unique, 64)
        tensors = {"hidden": hidden.float().contiguous()}
        if pooled is not None:
            tensors["pooled"] = pooled.float().contiguous()
        save_file(tensors, str(tmp / "text" / "embeddings.safetensors"))
        pd.DataFrame({"caption_id": range(len(unique)), "caption": unique}).to_parquet(
            tmp / "text" / "captions.parquet", index=False)
        write_json(tmp / "manifest.json", {
            "policy": {"resolution": resolution, "latent": "mean", "frames": cfg.frames},
            "scaling_factor": float(vae.config.scaling_factor), "latent_shape": shape,
            "text_shape": list(hidden.shape[1:]), "sdxl": text.sdxl, "counts": {**counts, "captions": len(unique)},
            "base_model": str(model_dir)})
    summary = {**{f"{k}_cached": v for k, v in counts.items()}, "captions": len(unique), "resolution": resolution,
               "latent_shape": shape}
    write_json(metrics, summary)
    write_json(timing_path(metrics), {"seconds": round(time.perf_counter() - t0, 1)})
    return summary
