"""Reference-sample cost and fidelity per sampler: theta_0 (`models/base`) draws one image per
training caption with each (sampler, steps); prints seconds, the ratio to DDIM 20, and the mean
ground-truth utility with its paired difference to DDIM 20 (same captions, same per-image seeds).
Embedded world only (needs `dvc repro base_model ingest`).
    python benchmarks/bench_ref_sampler.py [--captions 192]
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETTINGS = [("ddim", 20), ("dpmpp_2m", 10), ("ddim", 10), ("dpmpp_2m", 8)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--captions", type=int, default=192)
    args = ap.parse_args()

    from seppo.config import SamplingConfig
    from seppo.models.pipeline import generate, load_pipeline
    from seppo.world.utility import utilities

    pipe = load_pipeline(ROOT / "models/base")
    shard = sorted(glob.glob(str(ROOT / "data/world/pickapic/*.parquet")))[0]
    caps = pd.read_parquet(shard, columns=["caption"])["caption"].drop_duplicates().tolist()[: args.captions]
    res, secs = {}, {}
    for sampler, steps in SETTINGS:
        t = time.perf_counter()
        imgs = generate(pipe, caps, [0] * len(caps), SamplingConfig(sampler=sampler, steps=steps, guidance=7.5))
        secs[(sampler, steps)] = time.perf_counter() - t
        res[(sampler, steps)] = utilities(imgs, caps)
    ref, t_ref = res[SETTINGS[0]], secs[SETTINGS[0]]
    print(f"{len(caps)} captions, guidance 7.5, one image each; u = ground-truth utility in [0, 1]")
    for key, u in res.items():
        d = u - ref
        print(f"{key[0]:>9} {key[1]:>2} steps: {secs[key]:5.1f} s ({secs[key] / t_ref:.2f}x of ddim 20)  "
              f"mean u {u.mean():.4f}  diff vs ddim 20 {d.mean():+.4f} (SE {d.std(ddof=1) / np.sqrt(len(d)):.4f})")


if __name__ == "__main__":
    main()
