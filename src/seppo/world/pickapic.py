"""Writing Shapeland preference pairs in the exact Pick-a-Pic v2 schema (parquet shards)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io_utils import atomic_dir
from .generators import GENERATORS, Annotator, SimGenerator, true_utility
from .render import encode_jpeg
from .scene import Scene

PICKAPIC_SCHEMA = pa.schema(
    [
        ("are_different", pa.bool_()),
        ("best_image_uid", pa.string()),
        ("caption", pa.string()),
        ("created_at", pa.timestamp("ns")),
        ("has_label", pa.bool_()),
        ("image_0_uid", pa.string()),
        ("image_0_url", pa.string()),
        ("image_1_uid", pa.string()),
        ("image_1_url", pa.string()),
        ("jpg_0", pa.binary()),
        ("jpg_1", pa.binary()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        ("model_0", pa.string()),
        ("model_1", pa.string()),
        ("ranking_id", pa.int64()),
        ("user_id", pa.int64()),
        ("num_example_per_prompt", pa.int64()),
    ]
)
JPEG_QUALITY = 95
N_USERS = 64
_EPOCH = datetime(2023, 4, 1, tzinfo=timezone.utc).replace(tzinfo=None)


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def make_pairs(
    scenes: list[Scene],
    pairs_per_prompt: int,
    image_size: int,
    annotator: Annotator,
    identical_pair_rate: float,
    rng: np.random.Generator,
    generators: tuple[SimGenerator, ...] = GENERATORS,
) -> tuple[list[dict], list[dict]]:
    """Rows in the Pick-a-Pic v2 schema plus, per row, the simulation's truth (for reports).

    Each image of a pair comes from one of ``generators``, drawn uniformly, as Pick-a-Pic pairs come
    from a handful of SD-family models."""
    rows, truth = [], []
    ranking_id = 0
    for scene in scenes:
        caption = scene.caption()
        for _ in range(pairs_per_prompt):
            g0, g1 = (generators[i] for i in rng.integers(len(generators), size=2))
            img0, shown0, d0 = g0.generate(scene, image_size, rng)
            identical = bool(rng.random() < identical_pair_rate)
            if identical:
                g1, img1, shown1, d1 = g0, img0, shown0, d0
            else:
                img1, shown1, d1 = g1.generate(scene, image_size, rng)
            u0, u1 = true_utility(scene, shown0, d0), true_utility(scene, shown1, d1)
            label_0, label_1 = (0.5, 0.5) if identical else annotator.label(u0, u1, rng)
            uid0, uid1 = _uid(rng), _uid(rng)
            best = "" if label_0 == label_1 else (uid0 if label_0 == 1.0 else uid1)
            rows.append(
                {
                    "are_different": not identical,
                    "best_image_uid": best,
                    "caption": caption,
                    "created_at": _EPOCH + timedelta(minutes=ranking_id),
                    "has_label": True,
                    "image_0_uid": uid0,
                    "image_0_url": f"shapeland://images/{uid0}.jpg",
                    "image_1_uid": uid1,
                    "image_1_url": f"shapeland://images/{uid1}.jpg",
                    "jpg_0": encode_jpeg(img0, JPEG_QUALITY),
                    "jpg_1": encode_jpeg(img1, JPEG_QUALITY),
                    "label_0": label_0,
                    "label_1": label_1,
                    "model_0": g0.name,
                    "model_1": g1.name,
                    "ranking_id": ranking_id,
                    "user_id": int(rng.integers(N_USERS)),
                    "num_example_per_prompt": pairs_per_prompt,
                }
            )
            truth.append({"ranking_id": ranking_id, "true_utility_0": u0, "true_utility_1": u1})
            ranking_id += 1
    return rows, truth


def write_shards(rows: list[dict], out_dir: Path, shard_rows: int) -> list[Path]:
    """Write rows as ``train-XXXXX-of-YYYYY.parquet`` into ``out_dir`` atomically (whole folder)."""
    n_shards = max(1, -(-len(rows) // shard_rows))
    names = []
    with atomic_dir(out_dir) as tmp:
        for k in range(n_shards):
            chunk = rows[k * shard_rows : (k + 1) * shard_rows]
            table = pa.Table.from_pylist(chunk, schema=PICKAPIC_SCHEMA)
            name = f"train-{k:05d}-of-{n_shards:05d}.parquet"
            pq.write_table(table, tmp / name, compression="zstd")
            names.append(out_dir / name)
    return names
