"""Hostile inputs (issue 16): each case gets its outcome, a category and a stable, complete reason.

Every case is one small shard: a good row and the case's row(s). The test reads the case row's
status from the profile and its reason from the quarantine (or the profile for exclusions), and
checks the accounting identity on every run. All of these crashed or passed silently before.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from seppo.config import IngestConfig
from seppo.data.expectations import DataQualityError, run_validate
from seppo.data.ingest import STATUSES, run_ingest
from seppo.data.sources import SourceError
from seppo.world.pickapic import PICKAPIC_SCHEMA
from tests.test_data_ingest import img_bytes, row

ROOT = Path(__file__).resolve().parents[1]


def solid(size=(32, 32), colour=(200, 30, 30), mode="RGB", fmt="JPEG", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format=fmt, **save)
    return buf.getvalue()


def rotated_jpeg() -> bytes:
    """40x20 stored, left half red, right half blue, EXIF orientation 6 (display rotated 90 deg CW)."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def write(path, rows, types=None, raw=None):
    """One shard; `types` overrides column types, `raw` sets string columns from raw bytes."""
    schema = pa.schema([pa.field(f.name, (types or {}).get(f.name, f.type)) for f in PICKAPIC_SCHEMA])
    t = pa.Table.from_pylist(rows, schema=schema)
    for col, values in (raw or {}).items():  # bytes that are not UTF-8, in a string column
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(values, pa.binary()).view(pa.string()))
    pq.write_table(t, path)


def ingest(tmp_path, rows, types=None, raw=None, **cfg):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    write(src / "train-00000-of-00001.parquet", rows, types, raw)
    s = run_ingest(IngestConfig(source=str(src), **cfg), tmp_path / "out", tmp_path / "m.json")
    assert s["rows_in"] == sum(s[k] for k in STATUSES)
    prof = pd.read_parquet(tmp_path / "out" / "profile.parquet")
    q = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    return s, prof, q


STR_FLAGS = {"has_label": pa.string(), "are_different": pa.string()}
FLOAT_ID = {"ranking_id": pa.float64()}

# name: (rows, column types, raw string columns, [(row, status, exact reason or None)])
CASES = {
    "invalid_utf8_caption": (
        [row(0), row(1)], None, {"caption": [b"a red circle", b"a red \xff circle"]},
        [(0, "kept", None), (1, "quarantined", "caption: invalid UTF-8 (byte 0xff at position 6)")]),
    "invalid_utf8_uid": (
        [row(0), row(1)], None, {"image_0_uid": [b"u0a", b"\xc3\x28"]},
        [(1, "quarantined", "image_0_uid: invalid UTF-8 (byte 0xc3 at position 0)")]),
    "ranking_id_inf": (
        [row(0), row(1, ranking_id=float("inf"))], FLOAT_ID, None,
        [(0, "kept", None), (1, "quarantined", "ranking_id: not an integer within int64 (inf)")]),
    "ranking_id_beyond_int64": (
        [row(0), row(1, ranking_id=1e20)], FLOAT_ID, None,
        [(1, "quarantined", "ranking_id: not an integer within int64 (1e+20)")]),
    "ranking_id_nan": (
        [row(0), row(1, ranking_id=float("nan"))], FLOAT_ID, None,
        [(1, "quarantined", "ranking_id: not an integer within int64 (nan)")]),
    "has_label_string_false": (
        [row(0, has_label="True", are_different="True"), row(1, has_label="False", are_different="True")],
        STR_FLAGS, None,
        [(0, "kept", None), (1, "excluded", "has_label: false (unlabelled pair)")]),
    "has_label_string_zero": (
        [row(0, has_label="1", are_different="1"), row(1, has_label="0", are_different="1")], STR_FLAGS, None,
        [(0, "kept", None), (1, "excluded", "has_label: false (unlabelled pair)")]),
    "are_different_string_false": (
        [row(0, has_label="true", are_different="true"), row(1, has_label="true", are_different="False")],
        STR_FLAGS, None,
        [(0, "kept", None), (1, "excluded", "are_different: false (the same image twice)")]),
    "are_different_string_zero": (
        [row(0, has_label="true", are_different="true"), row(1, has_label="true", are_different="0")],
        STR_FLAGS, None, [(1, "excluded", "are_different: false (the same image twice)")]),
    "flag_not_a_boolean": (
        [row(0, has_label="true", are_different="true"), row(1, has_label="maybe", are_different="true")],
        STR_FLAGS, None, [(1, "quarantined", "has_label: not a boolean ('maybe')")]),
    "zero_width_caption": (
        [row(0), row(1, caption="\u200b\u200b\u200b")], None, None,
        [(1, "quarantined",
          "caption: no visible character (only spaces, zero-width or formatting characters)")]),
    "soft_hyphen_caption": (
        [row(0), row(1, caption="\u00ad \u00ad\u2060")], None, None,
        [(1, "quarantined",
          "caption: no visible character (only spaces, zero-width or formatting characters)")]),
    "terminal_control_caption": (
        [row(0), row(1, caption="a \x1b[31mred\x1b[0m circle")], None, None,
        [(1, "quarantined", "caption: contains a control character (U+001B)")]),
    "bidi_override_caption": (
        [row(0), row(1, caption="a red \u202eelcric")], None, None,
        [(1, "quarantined", "caption: contains a bidirectional control character (U+202E)")]),
    "emoji_and_accents_are_fine": (
        [row(0, caption="caf\u00e9 \U0001f469\u200d\U0001f52c, na\u00efve \u65e5\u672c")], None, None,
        [(0, "kept", None)]),
    "ranking_id_reused_other_caption": (
        [row(0), row(1, ranking_id=0, caption="a blue square")], None, None,
        [(0, "kept", None), (1, "quarantined", "ranking_id: reused by a row with another caption "
                                                "(first at {shard} row 0)")]),
    "ranking_id_same_pair_other_content": (
        [row(0), row(0, jpg_0=img_bytes(seed=7))], None, None,
        [(0, "kept", None), (1, "quarantined", "ranking_id: the same image pair again with other content "
                                                "(first at {shard} row 0)")]),
    "ranking_id_another_pair_of_the_same_ranking": (  # one ranking, several pairs: not a conflict
        [row(0), row(0, image_0_uid="u9a", image_1_uid="u9b", jpg_0=img_bytes(seed=7), jpg_1=img_bytes(seed=8))],
        None, None, [(0, "kept", None), (1, "kept", None)]),
    "ranking_id_reused_same_content": (
        [row(0), row(0)], None, None,
        [(0, "kept", None), (1, "duplicate", "ranking_id: the same row again (first at {shard} row 0)")]),
    "identical_bytes_marked_different": (
        [row(0), row(1, jpg_0=img_bytes(seed=9), jpg_1=img_bytes(seed=9))], None, None,
        [(1, "quarantined", "are_different: true, but jpg_0 and jpg_1 are the same bytes")]),
    "garbage_image_has_no_address": (
        [row(0), row(1, jpg_0=b"\x00garbage" * 4)], None, None,
        [(1, "quarantined", "jpg_0: not a decodable image (no image format recognised)")]),
    "format_outside_the_allow_list": (
        [row(0), row(1, jpg_0=solid(fmt="TIFF"))], None, None,
        [(1, "quarantined", "jpg_0: format TIFF not in ingest.allowed_formats")]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_hostile_row_gets_its_category_and_reason(name, tmp_path):
    rows, types, raw, expect = CASES[name]
    extra = {"allowed_formats": ["JPEG", "PNG"]} if name == "format_outside_the_allow_list" else {}
    s, prof, q = ingest(tmp_path, rows, types, raw, **extra)
    shard = str(tmp_path / "src" / "train-00000-of-00001.parquet")
    assert s["rows_in"] == len(rows)
    for i, status, reason in expect:
        got = prof[prof.row == i].iloc[0]
        assert got.status == status, (name, got.status, got.reason)
        reason = reason.format(shard=shard) if reason else None
        if status == "quarantined":
            hit = q[(q.row == i) & (q.table == "winners")]
            assert hit.reason.tolist() == [reason]
            assert hit.field.iloc[0] == reason.split(":")[0]
        else:
            assert (None if pd.isna(got.reason) else got.reason) == reason


CONVERTED = {  # bytes in jpg_0: what the conversion is called, and a pixel of the kept RGB image
    "webp": (solid(fmt="WEBP", lossless=True), "WEBP RGB->RGB", (200, 30, 30)),
    "cmyk": (solid(mode="CMYK", colour=(0, 0, 0, 0)), "JPEG CMYK->RGB", (255, 255, 255)),
    "gray": (solid(mode="L", colour=128), "JPEG L->RGB", (128, 128, 128)),
    "rgba_transparent": (solid(mode="RGBA", colour=(255, 0, 0, 0), fmt="PNG"), "PNG RGBA->RGB", (255, 255, 255)),
    "palette": (solid(mode="P", colour=3, fmt="GIF"), "GIF P->RGB", None),
    "gray16": (solid(mode="I;16", colour=65535, fmt="PNG"), "PNG I;16->RGB", (255, 255, 255)),
}


@pytest.mark.parametrize("name", list(CONVERTED))
def test_decodable_images_of_common_formats_and_modes_are_kept_as_rgb(name, tmp_path):
    data, conversion, pixel = CONVERTED[name]
    s, prof, _ = ingest(tmp_path, [row(0, jpg_0=data, jpg_1=data[:0] + solid(colour=(1, 2, 3)))])
    assert s["kept"] == 1 and s["quarantined"] == 0
    assert s["conversions"] == {conversion: 1}
    assert json.loads((tmp_path / "m.json").read_text())["conversions"] == {conversion: 1}
    assert prof.conversion.tolist() == [conversion]
    w = pd.read_parquet(tmp_path / "out" / "winners.parquet")
    img = Image.open(io.BytesIO(w.image.iloc[0]))
    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (32, 32))
    if pixel is not None:
        assert img.getpixel((5, 5)) == pixel


def test_an_upright_rgb_jpeg_or_png_is_kept_byte_for_byte(tmp_path):
    a, b = row(0), row(1, jpg_0=solid(fmt="PNG"))
    s, prof, _ = ingest(tmp_path, [a, b])
    assert s["kept"] == 2 and s["conversions"] == {} and s["loser_conversions"] == {}
    assert s["image_formats"] == {"JPEG RGB": 1, "PNG RGB": 1}
    assert prof.conversion.isna().all()
    w = pd.read_parquet(tmp_path / "out" / "winners.parquet")
    assert w.image.tolist() == [a["jpg_0"], b["jpg_0"]]


def test_exif_orientation_is_applied(tmp_path):
    s, prof, _ = ingest(tmp_path, [row(0, jpg_0=rotated_jpeg())])
    assert s["conversions"] == {"JPEG RGB->RGB exif-orientation-6": 1}
    w = pd.read_parquet(tmp_path / "out" / "winners.parquet")
    img = Image.open(io.BytesIO(w.image.iloc[0]))
    assert img.size == (20, 40) and (w.width.iloc[0], w.height.iloc[0]) == (20, 40)
    assert (prof.width.iloc[0], prof.height.iloc[0]) == (20, 40)
    top, bottom = np.asarray(img)[2, 10], np.asarray(img)[37, 10]
    assert top[0] > 200 and top[2] < 60  # the stored left half (red) is displayed on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_loser_is_converted_too_and_counted_apart(tmp_path):
    s, _, _ = ingest(tmp_path, [row(0, jpg_1=solid(mode="LA", colour=(9, 255), fmt="PNG"))])
    assert s["conversions"] == {} and s["loser_conversions"] == {"PNG LA->RGB": 1}
    lo = pd.read_parquet(tmp_path / "out" / "losers.parquet")
    assert Image.open(io.BytesIO(lo.image.iloc[0])).format == "PNG"


def test_webdataset_json_beyond_int64_and_bad_json_are_quarantined(tmp_path):
    import tarfile

    src = tmp_path / "tars"
    src.mkdir()
    good = row(0)
    samples = [("000000", json.dumps({k: v for k, v in good.items() if k not in ("jpg_0", "jpg_1", "created_at")})),
               ("000001", json.dumps({**{k: v for k, v in row(1).items() if k not in ("jpg_0", "jpg_1", "created_at")},
                                      "ranking_id": 2**70})),
               ("000002", b'{"caption": "a \xff"}')]
    with tarfile.open(src / "000000.tar", "w") as tar:
        for key, meta in samples:
            meta = meta.encode() if isinstance(meta, str) else meta
            for ext, data in (("json", meta), ("jpg_0", good["jpg_0"]), ("jpg_1", good["jpg_1"])):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    s = run_ingest(IngestConfig(source=str(src)), tmp_path / "o", tmp_path / "m")
    assert (s["kept"], s["quarantined"]) == (1, 2)
    assert s["reasons"] == {"json: not a readable JSON object": 1,
                            "ranking_id: not an integer within int64": 1}
    q = pd.read_parquet(tmp_path / "o" / "quarantine.parquet")
    assert q.reason.iloc[0] == f"ranking_id: not an integer within int64 ({2**70!r})"


def _two_group_shard(path, n_per_group=3):
    rows = [row(i, caption=f"caption {i}") for i in range(3 * n_per_group)]
    pq.write_table(pa.Table.from_pylist(rows, schema=PICKAPIC_SCHEMA), path, row_group_size=n_per_group,
                   compression="snappy")
    meta = pq.ParquetFile(path).metadata
    off = meta.row_group(1).column(0).data_page_offset  # the middle group's first page header
    raw = bytearray(path.read_bytes())
    raw[off: off + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    return rows


def test_rows_lost_in_a_corrupt_row_group_are_counted_from_the_footer(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _two_group_shard(src / "s.parquet")
    s = run_ingest(IngestConfig(source=str(src)), tmp_path / "o", tmp_path / "m.json")
    assert s["rows_in"] == 9  # what the footer says, not what could be read
    assert (s["kept"], s["lost"], s["unreadable_shards"]) == (6, 3, 1)
    assert s["rows_in"] == sum(s[k] for k in STATUSES)
    assert json.loads((tmp_path / "m.json").read_text())["lost"] == 3
    prof = pd.read_parquet(tmp_path / "o" / "profile.parquet")
    assert prof.row.tolist() == [0, 1, 2, 6, 7, 8]  # the group after the damage is still read
    q = pd.read_parquet(tmp_path / "o" / "quarantine.parquet")
    assert q.table.tolist() == ["shard"] and q.row.tolist() == [3]
    assert q.reason.iloc[0].startswith("row group 1 unreadable from row 3, 3 of its 3 rows lost (")
    with pytest.raises(DataQualityError, match=r"1 unreadable shard\(s\) \(3 rows lost inside them\)"):
        run_validate(IngestConfig(), tmp_path / "o", tmp_path / "d", tmp_path / "r.json", tmp_path / "v.json")


def test_files_next_to_the_shards_are_ignored_and_listed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "train-00000-of-00002.parquet", [row(0)])
    write(src / "train-00001-of-00002.parquet", [row(1)])
    write(src / "validation-00000-of-00001.parquet", [row(2)])  # another split of a Hub-layout mirror
    for name in ("README.md", "_SUCCESS", "dataset_infos.json", ".train-00000-of-00002.parquet.crc"):
        (src / name).write_text("x")
    (src / "sub").mkdir()
    s = run_ingest(IngestConfig(source=str(src)), tmp_path / "o", tmp_path / "m.json")
    assert (s["rows_in"], s["kept"], s["shards"], s["unreadable_shards"]) == (2, 2, 2, 0)
    ignored = {Path(x["path"]).name: x["why"] for x in s["ignored_files"]}
    assert ignored == {"README.md": "not a .parquet shard", "_SUCCESS": "not a .parquet shard",
                       "dataset_infos.json": "not a .parquet shard",
                       ".train-00000-of-00002.parquet.crc": "not a .parquet shard", "sub": "a folder",
                       "validation-00000-of-00001.parquet": "split 'validation', not ingest.split='train'"}
    assert json.loads((tmp_path / "o" / "counts.json").read_text())["ignored_files"] == s["ignored_files"]
    assert json.loads((tmp_path / "m.json").read_text())["ignored_files"] == 6
    run_validate(IngestConfig(), tmp_path / "o", tmp_path / "d", tmp_path / "r.json", tmp_path / "v.json")
    v = run_ingest(IngestConfig(source=str(src), split="validation"), tmp_path / "o2", tmp_path / "m2.json")
    assert v["rows_in"] == 1


def test_validate_before_ingest_is_a_clear_error(tmp_path):
    with pytest.raises(DataQualityError, match=r"no ingest output in .*run `seppo ingest`"):
        run_validate(IngestConfig(), tmp_path / "nothing", tmp_path / "d", tmp_path / "r", tmp_path / "v")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}")
    proc = subprocess.run([sys.executable, "-m", "seppo.cli", "validate", "--ingest-dir", "nothing"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: validate: no ingest output in nothing (missing counts.json, profile.parquet)" in proc.stderr


@pytest.mark.parametrize("rows", [[], [row(0, label_0=0.5, label_1=0.5), row(1, label_0=0.5, label_1=0.5)]],
                         ids=["empty", "only_ties"])
def test_too_few_winners_fail_validation(rows, tmp_path):
    s, _, _ = ingest(tmp_path, rows)
    assert s["kept"] == 0
    with pytest.raises(DataQualityError, match=r"0 winners kept of \d rows in .*fewer than ingest.min_winners=1"):
        run_validate(IngestConfig(), tmp_path / "out", tmp_path / "d", tmp_path / "r.json", tmp_path / "v.json")
    ok = run_validate(IngestConfig(min_winners=0), tmp_path / "out", tmp_path / "d", tmp_path / "r.json",
                      tmp_path / "v.json")
    assert ok["winners"] == 0


def test_top_reasons_are_quarantine_reasons_only_and_whole(tmp_path):
    rows = [row(i, has_label=False) for i in range(6)]  # excluded: not a quarantine reason
    rows += [row(10, jpg_0=img_bytes(seed=5), jpg_1=img_bytes(seed=5)), row(11, caption="x" * 1001), row(12)]
    s, _, _ = ingest(tmp_path, rows)
    assert s["reasons"] == {"are_different: true, but jpg_0 and jpg_1 are the same bytes": 1,
                            "caption: longer than ingest.max_caption_chars=1000": 1}
    assert s["excluded_reasons"] == {"has_label: false": 6}
    with pytest.raises(DataQualityError) as err:
        run_validate(IngestConfig(max_quarantine_share=0.1), tmp_path / "out", tmp_path / "d",
                     tmp_path / "r.json", tmp_path / "v.json")
    top = re.search(r"top reasons: (\[.*?\]);", str(err.value)).group(1)
    assert top == ("[('are_different: true, but jpg_0 and jpg_1 are the same bytes', 1), "
                   "('caption: longer than ingest.max_caption_chars=1000', 1)]")


def test_two_identical_runs_write_identical_bytes(tmp_path):
    rows = [row(0), row(1, jpg_0=b"\x00garbage"), row(2, jpg_0=img_bytes()[:-300]),
            row(3, jpg_0=solid(mode="RGBA", fmt="PNG")), row(4, jpg_0=rotated_jpeg()), row(5, has_label=False)]
    src = tmp_path / "src"
    src.mkdir()
    write(src / "a.parquet", rows)
    _two_group_shard(src / "b.parquet")
    (src / "README").write_text("x")
    outs = []
    for k in (1, 2):
        run_ingest(IngestConfig(source=str(src)), tmp_path / f"o{k}", tmp_path / f"m{k}.json")
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / f"o{k}").iterdir())})
    assert outs[0] == outs[1]
    assert set(outs[0]) == {"counts.json", "losers.parquet", "profile.parquet", "quarantine.parquet",
                            "winners.parquet"}
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    q = pd.read_parquet(tmp_path / "o1" / "quarantine.parquet")
    assert not q.reason.str.contains("0x[0-9a-f]{6}").any()


def test_a_hub_id_needs_a_pinned_revision(tmp_path):
    with pytest.raises(SourceError, match=r"Hub dataset id: set ingest.revision .*got ingest.revision=None"):
        run_ingest(IngestConfig(source="someone/pickapic_mirror"), tmp_path / "o", tmp_path / "m")
    with pytest.raises(SourceError, match="got ingest.revision='main'"):
        run_ingest(IngestConfig(source="someone/pickapic_mirror", revision="main"), tmp_path / "o", tmp_path / "m")
    assert not (tmp_path / "o").exists()


def test_a_datasets_folder_with_image_features_keeps_the_stored_bytes(tmp_path):
    import datasets

    rows = [{k: v for k, v in row(i, caption=f"c{i}").items() if k != "created_at"} for i in range(2)]
    rows[1]["caption"] = "\u200b"  # quarantined through the same checks
    ds = datasets.Dataset.from_list(rows).cast_column("jpg_0", datasets.Image()).cast_column("jpg_1", datasets.Image())
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "ds"))
    s = run_ingest(IngestConfig(source=str(tmp_path / "ds")), tmp_path / "o", tmp_path / "m")
    assert (s["source_format"], s["rows_in"], s["kept"], s["quarantined"]) == ("datasets", 2, 1, 1)
    w = pd.read_parquet(tmp_path / "o" / "winners.parquet")
    assert w.image.tolist() == [rows[0]["jpg_0"]]  # not decoded and re-encoded


def test_plan_and_preset_refuse_an_unpinned_hub_id_without_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from seppo.cli import app

    monkeypatch.chdir(tmp_path)  # preset re-plans ./dvc.yaml
    # a mirror is not the embedded world: no embedded PickScore (a cross-section rule of the config)
    mirror = "ingest:\n  source: someone/pickapic_mirror\nscorer_model:\n  enabled: false\n"
    (tmp_path / "params.yaml").write_text(mirror)
    res = CliRunner().invoke(app, ["plan", "--params", str(tmp_path / "params.yaml"), "--out",
                                   str(tmp_path / "dvc.yaml")])
    assert res.exit_code == 2 and "set ingest.revision to a commit sha" in res.output
    assert not (tmp_path / "dvc.yaml").exists()
    (tmp_path / "p2.yaml").write_text("train:\n  rounds: 1\n")
    (tmp_path / "preset.yaml").write_text(mirror)
    res = CliRunner().invoke(app, ["preset", str(tmp_path / "preset.yaml"), "--params", str(tmp_path / "p2.yaml")])
    assert res.exit_code == 2 and "set ingest.revision" in res.output
    assert (tmp_path / "p2.yaml").read_text() == "train:\n  rounds: 1\n"  # untouched
