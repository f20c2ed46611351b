"""Ingest: a corpus of bad inputs, each quarantined with its reason; accounting; every source kind."""

import io
import json
import tarfile
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from seppo.config import IngestConfig
from seppo.data.ingest import run_ingest
from seppo.data.sources import SourceNotFound
from seppo.world.pickapic import PICKAPIC_SCHEMA


def img_bytes(size=(32, 32), mode="RGB", fmt="JPEG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "CMYK": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode=mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def row(i, caption="a red circle", label_0=1.0, jpg_0=None, jpg_1=None, **kw):
    base = {
        "are_different": True, "best_image_uid": f"u{i}a", "caption": caption,
        "created_at": datetime(2023, 5, 1), "has_label": True,
        "image_0_uid": f"u{i}a", "image_0_url": "", "image_1_uid": f"u{i}b", "image_1_url": "",
        "jpg_0": img_bytes(seed=2 * i) if jpg_0 is None else jpg_0,
        "jpg_1": img_bytes(seed=2 * i + 1) if jpg_1 is None else jpg_1,
        "label_0": label_0, "label_1": 1.0 - label_0 if label_0 == label_0 else label_0,
        "model_0": "m", "model_1": "m", "ranking_id": i, "user_id": 1, "num_example_per_prompt": 1,
    }
    base.update(kw)
    return base


def write_shard(path, rows, schema=PICKAPIC_SCHEMA):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


GOOD = row(0)
BAD = {  # expected reason prefix for each bad row (the winner is jpg_0 unless said otherwise)
    "truncated": (row(1, jpg_0=img_bytes()[:-300]), "jpg_0: cannot decode JPEG data (OSError: image file is truncated"),
    "zero_byte": (row(2, jpg_0=b""), "jpg_0: zero-byte image"),
    "tiff_not_allowed": (row(3, jpg_0=img_bytes(fmt="TIFF")), "jpg_0: format TIFF not in ingest.allowed_formats"),
    "tiny": (row(7, jpg_0=img_bytes(size=(1, 1))), "jpg_0: a side below ingest.min_side=16 (1x1 px)"),
    "huge": (row(8, jpg_0=img_bytes(size=(20000, 16))), "jpg_0: a side above ingest.max_side=4096 (20000x16 px)"),
    "garbage": (row(9, jpg_0=b"not an image at all"), "jpg_0: not a decodable image (no image format recognised)"),
    "empty_caption": (row(10, caption=""), "caption: empty or whitespace only"),
    "space_caption": (row(11, caption="  \t "), "caption: empty or whitespace only"),
    "nul_caption": (row(12, caption="a red\x00 circle"), "caption: contains a NUL character"),
    "long_caption": (row(13, caption="x" * 1001),
                     "caption: longer than ingest.max_caption_chars=1000 (1001 characters)"),
    "label_2": (row(14, label_0=2.0, label_1=0.0), "label_0: not in {0, 0.5, 1} (2)"),
    "label_nan": (row(15, label_0=float("nan"), label_1=float("nan")), "label_0: not a finite number (nan)"),
    "bad_loser_side": (row(16, label_0=0.0, jpg_1=b""), "jpg_1: zero-byte image"),
}
# A policy narrower than the defaults: what the allow-lists (still params) reject
NARROW = dict(allowed_formats=["JPEG", "PNG"], allowed_modes=["RGB", "RGBA", "L"])


@pytest.fixture()
def corrupt_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = [GOOD] + [r for r, _ in BAD.values()]
    rows += [row(20, label_0=0.5, label_1=0.5)]  # a tie
    rows += [row(21, has_label=False)]  # unlabelled
    rows += [row(22, are_different=False)]  # the same image twice
    rows += [dict(GOOD, ranking_id=23)]  # a duplicate row (same caption, same winner bytes)
    rows += [row(24, jpg_1=b"\xff\xd8 broken")]  # good winner, bad loser: winner kept
    write_shard(src / "train-00000-of-00003.parquet", rows)
    # a shard missing a column: its 2 rows are quarantined
    no_label = pa.schema([f for f in PICKAPIC_SCHEMA if f.name != "label_1"])
    write_shard(src / "train-00001-of-00003.parquet",
                [{k: v for k, v in row(30 + i).items() if k != "label_1"} for i in range(2)], no_label)
    (src / "train-00002-of-00003.parquet").write_bytes(b"this is not parquet")
    return src, len(rows) + 2


def test_every_bad_input_is_quarantined_with_its_reason(corrupt_source, tmp_path):
    src, n_rows = corrupt_source
    summary = run_ingest(IngestConfig(source=str(src), **NARROW), tmp_path / "out", tmp_path / "m.json")
    q = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    shard0 = str(src / "train-00000-of-00003.parquet")
    for name, (r, reason) in BAD.items():
        hit = q[(q.shard == shard0) & (q.ranking_id == r["ranking_id"]) & (q.table == "winners")]
        assert len(hit) == 1, name
        assert hit.reason.iloc[0].startswith(reason), (name, hit.reason.iloc[0])
        assert hit.field.iloc[0] == reason.split(":")[0], name
        assert hit.row.iloc[0] == 1 + list(BAD).index(name)  # row number inside the shard (GOOD is row 0)
    missing = q[q.shard.str.endswith("00001-of-00003.parquet")]
    assert list(missing.row) == [0, 1] and missing.reason.str.startswith("label_1: column missing").all()
    bad_shard = q[q.table == "shard"]
    assert len(bad_shard) == 1 and "not a readable parquet file" in bad_shard.reason.iloc[0]
    loser = q[q.table == "losers"]
    assert list(loser.ranking_id) == [24]

    assert summary["rows_in"] == n_rows
    assert summary["kept"] == 2  # GOOD and row 24
    assert summary["tie"] == 1 and summary["excluded"] == 2 and summary["duplicate"] == 1
    assert summary["quarantined"] == len(BAD) + 2
    assert summary["unreadable_shards"] == 1
    assert summary["losers_kept"] == 1


def test_rows_in_equals_the_sum_of_outcomes(corrupt_source, tmp_path):
    src, _ = corrupt_source
    s = run_ingest(IngestConfig(source=str(src)), tmp_path / "out", tmp_path / "m.json")
    assert s["rows_in"] == s["kept"] + s["tie"] + s["excluded"] + s["duplicate"] + s["quarantined"]
    prof = pd.read_parquet(tmp_path / "out" / "profile.parquet")
    assert len(prof) == s["rows_in"]
    assert prof.groupby("status").size().to_dict() == {
        k: s[k] for k in ("kept", "tie", "excluded", "duplicate", "quarantined") if s[k]}
    assert len(pd.read_parquet(tmp_path / "out" / "winners.parquet")) == s["kept"]
    assert json.loads((tmp_path / "m.json").read_text())["rows_in"] == s["rows_in"]


def test_winner_is_the_labelled_image_and_loser_kept_apart(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a, b = row(0, label_0=1.0), row(1, label_0=0.0)
    write_shard(src / "s.parquet", [a, b])
    run_ingest(IngestConfig(source=str(src)), tmp_path / "out", tmp_path / "m.json")
    w = pd.read_parquet(tmp_path / "out" / "winners.parquet")
    lo = pd.read_parquet(tmp_path / "out" / "losers.parquet")
    assert w.image.tolist() == [a["jpg_0"], b["jpg_1"]]
    assert w.winner_uid.tolist() == ["u0a", "u1b"]
    assert lo.image.tolist() == [a["jpg_1"], b["jpg_0"]]
    assert lo.winner_uid.tolist() == w.winner_uid.tolist()


def test_extra_columns_are_ignored_and_batches_stream(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = [row(i, caption=f"caption {i}") for i in range(7)]
    t = pa.Table.from_pylist(rows, schema=PICKAPIC_SCHEMA).append_column(
        "__index_level_0__", pa.array(range(7), pa.int64()))
    pq.write_table(t, src / "s.parquet", row_group_size=3)
    s = run_ingest(IngestConfig(source=str(src / "*.parquet"), batch_rows=2), tmp_path / "o", tmp_path / "m")
    assert s["kept"] == 7
    prof = pd.read_parquet(tmp_path / "o" / "profile.parquet")
    assert prof.row.tolist() == list(range(7))


def test_webdataset_tars_go_through_the_same_checks(tmp_path):
    src = tmp_path / "tars"
    src.mkdir()
    rows = [GOOD, BAD["zero_byte"][0]]
    with tarfile.open(src / "000000.tar", "w") as tar:
        for r in rows:
            key = f"{r['ranking_id']:06d}"
            meta = {k: v for k, v in r.items() if k not in ("jpg_0", "jpg_1", "created_at")}
            for ext, data in (("json", json.dumps(meta).encode()), ("jpg_0", r["jpg_0"]), ("jpg_1", r["jpg_1"])):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    s = run_ingest(IngestConfig(source=str(src)), tmp_path / "o", tmp_path / "m")
    assert (s["kept"], s["quarantined"]) == (1, 1)
    assert s["reasons"] == {"jpg_0: zero-byte image": 1}


def test_datasets_folder_source(tmp_path):
    import datasets

    rows = [row(i, caption=f"c{i}") for i in range(3)]
    ds = datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "created_at"} for r in rows])
    ds.save_to_disk(str(tmp_path / "ds"))
    s = run_ingest(IngestConfig(source=str(tmp_path / "ds")), tmp_path / "o", tmp_path / "m")
    assert s["kept"] == 3 and s["source"] == str(tmp_path / "ds")


def test_missing_source_says_what_was_looked_for(tmp_path):
    with pytest.raises(SourceNotFound, match="ingest.source=.*local mirror"):
        run_ingest(IngestConfig(source=str(tmp_path / "nowhere")), tmp_path / "o", tmp_path / "m")
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_failed_ingest_keeps_the_previous_output(tmp_path, corrupt_source):
    src, _ = corrupt_source
    run_ingest(IngestConfig(source=str(src)), tmp_path / "o", tmp_path / "m")
    before = (tmp_path / "o" / "winners.parquet").read_bytes()
    with pytest.raises(SourceNotFound):
        run_ingest(IngestConfig(source=str(tmp_path / "gone")), tmp_path / "o", tmp_path / "m")
    assert (tmp_path / "o" / "winners.parquet").read_bytes() == before
