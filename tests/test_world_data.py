"""The world stage: determinism, the Pick-a-Pic v2 schema of its shards, the web corpus."""

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from seppo.config import WorldConfig
from seppo.world.render import decode_image
from seppo.world.stage import run_world

PICKAPIC_COLUMNS = {
    "are_different": "bool",
    "best_image_uid": "string",
    "caption": "string",
    "created_at": "timestamp[ns]",
    "has_label": "bool",
    "image_0_uid": "string",
    "image_0_url": "string",
    "image_1_uid": "string",
    "image_1_url": "string",
    "jpg_0": "binary",
    "jpg_1": "binary",
    "label_0": "double",
    "label_1": "double",
    "model_0": "string",
    "model_1": "string",
    "ranking_id": "int64",
    "user_id": "int64",
    "num_example_per_prompt": "int64",
}

SMALL = dict(train_prompts=12, pairs_per_prompt=4, eval_prompts=5, shard_rows=20, web_size=60,
             utility_check_renders=40, identical_pair_rate=0.1)


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    metrics = run_world(WorldConfig(**SMALL), out, out.parent / "world.json")
    return out, metrics


def test_same_seed_same_bytes_other_seed_other_bytes(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    run_world(WorldConfig(**SMALL), again, tmp_path / "m.json")
    assert _digest(again) == _digest(out)
    other = tmp_path / "other"
    run_world(WorldConfig(**SMALL, seed=1), other, tmp_path / "m2.json")
    assert _digest(other) != _digest(out)


def test_shards_have_the_exact_pickapic_v2_schema(world):
    out, _ = world
    shards = sorted((out / "pickapic").glob("*.parquet"))
    assert [s.name for s in shards] == [f"train-{k:05d}-of-00003.parquet" for k in range(3)]
    for shard in shards:
        schema = pq.read_schema(shard)
        assert {f.name: str(f.type) for f in schema} == PICKAPIC_COLUMNS


def test_rows_are_consistent_like_the_real_set(world):
    out, metrics = world
    df = pq.read_table(out / "pickapic").to_pandas()
    assert len(df) == 12 * 4 == metrics["pairs"]["rows"]
    assert df["ranking_id"].is_unique
    assert set(zip(df.label_0, df.label_1)) <= {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)}
    decided = df[df.label_0 != df.label_1]
    winner_uid = np.where(decided.label_0 == 1.0, decided.image_0_uid, decided.image_1_uid)
    assert (decided.best_image_uid == winner_uid).all()
    assert (df[df.label_0 == df.label_1].best_image_uid == "").all()
    # Several pairs, hence several winners, per caption; num_example_per_prompt says how many.
    per_caption = df.groupby("caption").size()
    assert (per_caption == 4).all() and (df.num_example_per_prompt == 4).all()
    # Identical images are marked as such and are ties.
    same = df[~df.are_different]
    assert len(same) > 0 and (same.jpg_0 == same.jpg_1).all() and (same.label_0 == 0.5).all()
    img = decode_image(df.jpg_0.iloc[0])
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


def test_eval_prompts_are_held_out(world):
    import pandas as pd

    out, _ = world
    prompts = pd.read_parquet(out / "prompts.parquet")
    pairs = set(pq.read_table(out / "pickapic", columns=["caption"]).column(0).to_pylist())
    eval_caps = set(prompts[prompts.split == "eval"].caption)
    assert len(eval_caps) == 5 and not (eval_caps & pairs)
    assert set(prompts[prompts.split == "train"].caption) == pairs


def test_web_corpus_and_metrics(world):
    import pandas as pd

    out, metrics = world
    images = np.load(out / "web" / "images.npy")
    caps = pd.read_parquet(out / "web" / "captions.parquet")
    assert images.shape == (60, 32, 32, 3) and len(caps) == 60
    assert set(caps.kind) <= {"exact", "partial", "wrong"}
    on_disk = json.loads((out.parent / "world.json").read_text())
    assert on_disk["pairs"]["rows"] == metrics["pairs"]["rows"]
    # The annotator prefers the better image: winners score higher than losers on average.
    assert metrics["pairs"]["winner_mean_utility"] > metrics["pairs"]["loser_mean_utility"]
    acc = metrics["utility_check"]["attribute_accuracy_clean"]
    assert min(acc.values()) >= 0.9
