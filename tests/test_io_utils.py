import pytest

from seppo.io_utils import atomic_dir, atomic_path, write_json


def test_failed_write_keeps_the_good_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert list(tmp_path.iterdir()) == [target]


def test_failed_directory_write_keeps_the_good_directory(tmp_path):
    out = tmp_path / "shards"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b").write_text("partial")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_leftovers_of_a_killed_writer_are_cleared_by_the_next_write(tmp_path):
    out = tmp_path / "eval"
    # what kill -9 leaves: a temp dir mid-write, and the previous output moved aside mid-swap
    (tmp_path / ".eval.abc123.tmp").mkdir()
    (tmp_path / ".eval.abc123.tmp" / "half").write_text("x")
    (tmp_path / ".eval.old").mkdir()
    (tmp_path / ".evaluation.zz.tmp").mkdir()  # another output's temp dir: not ours to remove
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("good")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".evaluation.zz.tmp", "eval"]


def test_timing_files_sit_beside_the_metrics(tmp_path):
    from seppo.layout import timing_path

    assert timing_path("reports/metrics/cache.json").as_posix() == "reports/metrics/timing/cache.json"
