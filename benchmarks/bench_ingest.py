"""Ingest throughput and memory at Pick-a-Pic's image size (512 px), on a generated source.

    python benchmarks/bench_ingest.py [--rows 1024] [--side 512] [--row-group 256]

Writes a parquet source of `--rows` pairs of `--side` px JPEGs (smooth random scenes plus noise,
~the size of Pick-a-Pic's JPEGs; every 10th winner a PNG, half of them RGBA, so 5% of the winners
go through the conversion to RGB) in
4 shards with row groups of `--row-group` rows, then runs `seppo ingest` in a fresh process twice:
on one shard, two and all four. Prints rows/s and the peak RSS of each run next to the size of one
row group: once the output writers' buffers are full (16 MB of images each, reached within the
second shard), the peak must not grow with the source: it is bounded by the row group / batch
size, plus the ~250 bytes per row that duplicate and ranking_id detection remember.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _image(rng, side: int, fmt: str, mode: str = "RGB") -> bytes:
    from PIL import Image

    small = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    arr = np.asarray(small.resize((side, side), Image.BICUBIC), dtype=np.int16)
    arr = np.clip(arr + rng.integers(-12, 12, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_source(root: Path, rows: int, side: int, row_group: int) -> float:
    """4 shards of Pick-a-Pic v2 rows; returns the mean bytes of one row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seppo.world.pickapic import PICKAPIC_SCHEMA

    rng = np.random.default_rng(0)
    per = rows // 4
    sizes = []
    for k in range(4):
        out = []
        for i in range(k * per, (k + 1) * per):
            fmt, mode = ("PNG", ("RGB", "RGBA")[i // 10 % 2]) if i % 10 == 0 else ("JPEG", "RGB")
            a, b = _image(rng, side, fmt, mode), _image(rng, side, "JPEG")
            sizes.append(len(a) + len(b))
            out.append({"are_different": True, "best_image_uid": f"u{i}a", "caption": f"scene number {i}",
                        "created_at": None, "has_label": True, "image_0_uid": f"u{i}a", "image_0_url": "",
                        "image_1_uid": f"u{i}b", "image_1_url": "", "jpg_0": a, "jpg_1": b,
                        "label_0": 1.0, "label_1": 0.0, "model_0": "m", "model_1": "m", "ranking_id": i,
                        "user_id": 1, "num_example_per_prompt": 1})
        pq.write_table(pa.Table.from_pylist(out, schema=PICKAPIC_SCHEMA),
                       root / f"train-{k:05d}-of-00004.parquet", row_group_size=row_group)
    return float(np.mean(sizes)) * row_group


def child(source: str, out: str, batch_rows: int) -> None:
    from seppo.config import IngestConfig
    from seppo.data.ingest import run_ingest

    t0 = time.perf_counter()
    s = run_ingest(IngestConfig(source=source, batch_rows=batch_rows), Path(out), Path(out + ".json"))
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps({"rows": s["rows_in"], "kept": s["kept"], "seconds": dt, "peak_rss_mb": rss,
                      "conversions": s["conversions"], "formats": s["image_formats"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--row-group", type=int, default=256)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        t0 = time.perf_counter()
        group_bytes = make_source(src, args.rows, args.side, args.row_group)
        print(f"source: {args.rows} pairs of {args.side} px images in 4 shards, written in "
              f"{time.perf_counter() - t0:.1f} s; one row group ({args.row_group} rows) = "
              f"{group_bytes / 2**20:.1f} MB of image bytes")
        for name, source in (("1 shard ", str(src / "train-00000-of-00004.parquet")),
                             ("2 shards", str(src / "train-0000[01]-of-00004.parquet")), ("4 shards", str(src))):
            res = subprocess.run([sys.executable, __file__, "--child", source, f"{tmp}/out-{name.strip()[0]}",
                                  str(args.row_group)], capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{name}: {r['rows']} rows in {r['seconds']:.1f} s = {r['rows'] / r['seconds']:.0f} rows/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, kept {r['kept']}, conversions {r['conversions']}")


if __name__ == "__main__":
    main()
