"""The cache stage: VAE latents of winners (and losers) and text embeddings of captions, encoded once.

Layout (all DVC outputs):
  <out>/winners/shard-NNNNN.safetensors   {"latents": (n, C, h, w)}, scaled by the VAE scaling factor
  <out>/winners/index.parquet             row -> winner_uid, caption_id, shard, offset, crop, flip
  <out>/losers/...                        the same for the losers (Diffusion-DPO baseline only)
  <out>/text/embeddings.safetensors       {"hidden": (n_captions, tokens, dim)} (+ "pooled" for SDXL)
  <out>/text/captions.parquet             caption_id -> caption
  <out>/manifest.json                     the preprocessing policy, scaling factor, counts
Training reads this and never decodes a JPEG or runs the text encoder.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..config import CacheConfig
from ..io_utils import atomic_dir, write_json
from ..layout import timing_path
from ..models.conditioning import TextCond, TextEncoders, sdxl_time_ids
from ..seeding import named_rng

_FILTERS = {"bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling values


def row_rng(seed: int, key: str) -> np.random.Generator:
    """A generator for one row's random crop/flip/latent draw: independent of order and batching."""
    return named_rng(seed, key)


def preprocess(data: bytes, resolution: int, cfg: CacheConfig, key: str) -> tuple[np.ndarray, dict]:
    """Decode, shorter-side resize, square crop, optional flip -> float32 CHW in [-1, 1]."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample=_FILTERS[cfg.resize])
    rng = row_rng(cfg.seed, key)
    if cfg.crop == "center":
        x0, y0 = (nw - resolution) // 2, (nh - resolution) // 2
    else:
        x0, y0 = int(rng.integers(nw - resolution + 1)), int(rng.integers(nh - resolution + 1))
    img = img.crop((x0, y0, x0 + resolution, y0 + resolution))
    flip = cfg.flip == "random" and bool(rng.random() < 0.5)
    arr = np.asarray(img, dtype=np.float32)
    if flip:
        arr = arr[:, ::-1]
    return (arr.transpose(2, 0, 1) / 127.5 - 1.0), {"crop_x": x0, "crop_y": y0, "flipped": flip}


def load_vae(model_dir: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(model_dir, subfolder="vae", use_safetensors=True).eval()


def load_encoders(model_dir: Path):
    """The base model's VAE, (first) tokenizer and text encoder (safetensors only), in eval mode."""
    text = TextEncoders(model_dir)
    return load_vae(model_dir), text.tokenizers[0], text.encoders[0]


def default_resolution(model_dir: Path) -> int:
    unet_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_cfg = json.loads((model_dir / "vae" / "config.json").read_text())
    factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    return int(unet_cfg["sample_size"]) * factor


def encode_images(vae, batch: np.ndarray, cfg: CacheConfig, keys: list[str]):
    import torch

    with torch.no_grad():
        dist = vae.encode(torch.from_numpy(np.ascontiguousarray(batch))).latent_dist
        if cfg.latent == "mean":
            z = dist.mean
        else:
            eps = torch.stack([
                torch.from_numpy(row_rng(cfg.seed + 1, k).standard_normal(dist.mean.shape[1:]).astype(np.float32))
                for k in keys
            ])
            z = dist.mean + dist.std * eps
    return z * vae.config.scaling_factor


def _cache_table(src: Path, uid_col: str, out: Path, vae, resolution: int, cfg: CacheConfig,
                 caption_ids: dict[str, int], extra_cols: tuple[str, ...] = ()) -> int:
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    dtype = getattr(torch, cfg.dtype)
    index, pending, shard_no, n = [], [], 0, 0

    def flush():
        nonlocal pending, shard_no
        if pending:
            save_file({"latents": torch.cat(pending).to(dtype).contiguous()},
                      str(out / f"shard-{shard_no:05d}.safetensors"))
            pending, shard_no = [], shard_no + 1

    in_shard = 0
    pf = pq.ParquetFile(src)
    for batch in pf.iter_batches(batch_size=cfg.batch_size, columns=[uid_col, "caption", "image", *extra_cols]):
        rows = batch.to_pylist()
        arrs, keys = [], []
        for r in rows:
            key = r[uid_col]
            arr, info = preprocess(r["image"], resolution, cfg, key)
            arrs.append(arr)
            keys.append(key)
            index.append({uid_col: key, **{c: r[c] for c in extra_cols},
                          "caption_id": caption_ids[r["caption"]], "shard": shard_no,
                          "offset": in_shard, **info})
            in_shard += 1
            n += 1
        pending.append(encode_images(vae, np.stack(arrs), cfg, keys))
        if in_shard >= cfg.shard_rows:
            flush()
            in_shard = 0
    flush()
    pd.DataFrame(index).to_parquet(out / "index.parquet", index=False)
    return n


def run_cache(cfg: CacheConfig, ingest_dir: Path, model_dir: Path, out: Path, metrics: Path) -> dict:
    import time

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    vae, text = load_vae(model_dir), TextEncoders(model_dir)
    resolution = cfg.resolution or default_resolution(model_dir)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    tables = [("winners", "winner_uid", ())]
    if cfg.include_losers:
        tables.append(("losers", "loser_uid", ("winner_uid",)))
    captions: list[str] = []
    for name, _, _ in tables:
        captions += pq.read_table(ingest_dir / f"{name}.parquet", columns=["caption"]).column(0).to_pylist()
    unique = sorted(set(captions))
    caption_ids = {c: i for i, c in enumerate(unique)}
    counts = {}
    with atomic_dir(out) as tmp:
        for name, uid_col, extra in tables:
            counts[name] = _cache_table(ingest_dir / f"{name}.parquet", uid_col, tmp / name, vae,
                                        resolution, cfg, caption_ids, extra)
        (tmp / "text").mkdir()
        hidden, pooled = text.encode(unique, cfg.batch_size) if unique else (torch.zeros(0), None)
        dtype = getattr(torch, cfg.dtype)
        tensors = {"hidden": hidden.to(dtype).contiguous()}
        if pooled is not None:
            tensors["pooled"] = pooled.to(dtype).contiguous()
        save_file(tensors, str(tmp / "text" / "embeddings.safetensors"))
        pd.DataFrame({"caption_id": range(len(unique)), "caption": unique}).to_parquet(
            tmp / "text" / "captions.parquet", index=False)
        manifest = {
            "policy": {**cfg.model_dump(), "resolution": resolution},
            "scaling_factor": float(vae.config.scaling_factor),
            "latent_shape": [int(vae.config.latent_channels)] + [resolution // factor] * 2,
            "text_shape": list(hidden.shape[1:]),
            "sdxl": text.sdxl,  # pooled embeddings stored; time ids (res, res, 0, 0, res, res)
            "counts": {**counts, "captions": len(unique)},
            "base_model": str(model_dir),
        }
        write_json(tmp / "manifest.json", manifest)
    summary = {**{f"{k}_cached": v for k, v in counts.items()}, "captions": len(unique),
               "resolution": resolution}
    write_json(metrics, summary)  # a dep of the report: nothing run-dependent in it
    write_json(timing_path(metrics), {"seconds": round(time.perf_counter() - t0, 1)})
    return summary


class LatentCache:
    """Read access to a cache folder: latents by row (lazily, shard by shard) and text embeddings."""

    def __init__(self, root: Path, table: str = "winners"):
        from safetensors.torch import load_file

        self.root = Path(root)
        self.manifest = json.loads((self.root / "manifest.json").read_text())
        self.index = pd.read_parquet(self.root / table / "index.parquet")
        self.table = table
        text = load_file(str(self.root / "text" / "embeddings.safetensors"))
        self.text, self.pooled = text["hidden"], text.get("pooled")
        self.resolution = int(self.manifest["policy"]["resolution"])
        self.captions = pd.read_parquet(self.root / "text" / "captions.parquet").caption.tolist()
        self._shards: dict[int, object] = {}
        self._shard_idx = self.index["shard"].to_numpy()
        self._offset = self.index["offset"].to_numpy()
        self.caption_id = self.index["caption_id"].to_numpy()

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, k: int):
        from safetensors import safe_open

        if k not in self._shards:
            self._shards[k] = safe_open(str(self.root / self.table / f"shard-{k:05d}.safetensors"), "pt")
        return self._shards[k]

    def latents(self, rows) -> "torch.Tensor":  # noqa: F821
        import torch

        rows = np.asarray(rows)
        out = [None] * len(rows)
        for k in np.unique(self._shard_idx[rows]):
            sel = np.nonzero(self._shard_idx[rows] == k)[0]
            sl = self._shard(int(k)).get_slice("latents")
            offs = self._offset[rows[sel]].astype(np.int64)
            lo, hi = int(offs.min()), int(offs.max()) + 1
            if hi - lo <= 4 * len(sel):  # nearly contiguous: one read, then index
                block = sl[lo:hi]
                for j, o in zip(sel, offs):
                    out[j] = block[o - lo : o - lo + 1]
            else:
                for j, o in zip(sel, offs):
                    out[j] = sl[int(o) : int(o) + 1]
        return torch.cat(out).float()

    def all_latents(self) -> "torch.Tensor":  # noqa: F821
        return self.latents(np.arange(len(self)))

    def embeddings(self, rows) -> "torch.Tensor":  # noqa: F821
        return self.text[self.caption_id[np.asarray(rows)]].float()

    def conditioning(self, rows) -> TextCond:
        """Token embeddings, plus SDXL's pooled embeddings and time ids when the model has them."""
        rows = np.asarray(rows)
        if self.pooled is None:
            return TextCond(self.embeddings(rows))
        return TextCond(self.embeddings(rows), self.pooled[self.caption_id[rows]].float(),
                        sdxl_time_ids(self.resolution, len(rows)))
