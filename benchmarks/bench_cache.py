"""Loading cached latents + text embeddings vs re-encoding the winners (decode, VAE, text encoder).

Run after `dvc repro` (it reads data/ingest, data/cache and models/base):
    python benchmarks/bench_cache.py [--rows 512]
Prints both throughputs, measured in this run on the same rows, and their ratio (target >= 20x).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ingest", type=Path, default=Path("data/ingest"))
    ap.add_argument("--cache", type=Path, default=Path("data/cache"))
    ap.add_argument("--model", type=Path, default=Path("models/base"))
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    for p in (args.ingest, args.cache, args.model):
        if not p.exists():
            raise SystemExit(f"{p} is missing: run `dvc repro cache` first")

    from seppo.config import CacheConfig
    from seppo.data.cache import LatentCache, encode_images, load_encoders, preprocess
    from seppo.models.pretrain import encode_text

    manifest = json.loads((args.cache / "manifest.json").read_text())
    cfg = CacheConfig(**{k: v for k, v in manifest["policy"].items()})
    table = pq.read_table(args.ingest / "winners.parquet", columns=["winner_uid", "caption", "image"])
    n = min(args.rows, table.num_rows)
    rows = table.slice(0, n).to_pylist()
    vae, tok, te = load_encoders(args.model)
    torch.set_num_threads(torch.get_num_threads())

    def encode():
        for i in range(0, n, args.batch):
            part = rows[i : i + args.batch]
            x = np.stack([preprocess(r["image"], cfg.resolution, cfg, r["winner_uid"])[0] for r in part])
            encode_images(vae, x, cfg, [r["winner_uid"] for r in part])
            encode_text(tok, te, [r["caption"] for r in part], args.batch)

    def load():
        cache = LatentCache(args.cache)
        for i in range(0, n, args.batch):
            idx = np.arange(i, min(n, i + args.batch))
            cache.latents(idx)
            cache.embeddings(idx)

    results = {}
    for name, fn in (("re-encode", encode), ("cache load", load)):
        fn()  # warm-up
        t0 = time.perf_counter()
        fn()
        results[name] = n / (time.perf_counter() - t0)
        print(f"{name:>10}: {results[name]:10.1f} rows/s")
    print(f"ratio cache/re-encode: {results['cache load'] / results['re-encode']:.1f}x over {n} rows (target >= 20x)")


if __name__ == "__main__":
    main()
