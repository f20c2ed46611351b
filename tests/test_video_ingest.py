"""Video ingest: every row of the captions table kept or quarantined with its reason; nothing dropped."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seppo.data.video_ingest import ClipPolicy, VideoSourceError, ingest_clips, load_clips

CAP = "one small red circle on a white background, moving right"


def _frames(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _folder(path, frames):
    path.mkdir(parents=True)
    for k, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{k:03d}.png")


def _gif(path, n, size=16):
    # solid palette colours survive GIF's palette exactly
    cols = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)]
    ims = [Image.new("RGB", (size, size), cols[k % 4]) for k in range(n)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0)
    return np.stack([np.asarray(i) for i in ims])


def _source(tmp_path):
    src = tmp_path / "src"
    (src / "clips").mkdir(parents=True)
    good_gif = _gif(src / "clips/a.gif", 4)
    good_png = _frames(4, seed=1)
    _folder(src / "clips/b", good_png)
    _gif(src / "clips/full.gif", 4)
    data = (src / "clips/full.gif").read_bytes()
    (src / "clips/trunc.gif").write_bytes(data[: len(data) * 2 // 3])
    (src / "clips/empty").mkdir()
    _folder(src / "clips/three", _frames(3, seed=2))
    _folder(src / "clips/huge", _frames(4, size=128, seed=3))
    _folder(src / "clips/mixed", list(_frames(2, seed=4)) + list(_frames(2, size=20, seed=5)))
    (src / "clips/text.gif").write_text("not an image")
    rows = [("a", CAP, "clips/a.gif"), ("b", CAP, "clips/b"), ("c", CAP, "clips/trunc.gif"),
            ("d", CAP, "clips/empty"), ("e", CAP, "clips/three"), ("f", CAP, "clips/huge"),
            ("g", "   ", "clips/b"), ("a", CAP, "clips/b"), ("h", CAP, "clips/missing"),
            ("i", CAP, "../outside"), ("j", CAP, "clips/mixed"), ("k", CAP, "clips/text.gif")]
    pd.DataFrame(rows, columns=["clip_id", "caption", "path"]).to_csv(src / "captions.csv", index=False)
    return src, good_gif, good_png


def test_every_row_is_kept_or_quarantined_with_its_reason(tmp_path):
    src, good_gif, good_png = _source(tmp_path)
    counts = ingest_clips(src, tmp_path / "out", ClipPolicy(frames=4, max_side=64))
    assert (counts["rows_in"], counts["kept"], counts["quarantined"]) == (12, 2, 10)
    q = pd.read_parquet(tmp_path / "out/quarantine.parquet").set_index("row")["reason"].to_dict()
    assert q[2].startswith("unreadable: truncated after")
    assert q[3] == "frames: zero length (no .png/.jpg/.jpeg/.webp files in empty/)"
    assert q[4] == "frames: expected 4, got 3"
    assert q[5] == "resolution: 128x128 exceeds max_side=64 (huge/000.png)"
    assert q[6] == "caption: empty or whitespace only"
    assert q[7] == "clip_id: duplicate (of row 0)"
    assert q[8] == "path: not found (clips/missing)"
    assert q[9] == "path: outside the source folder (../outside)"
    assert q[10] == "frames: sizes differ (frame 2 is 20x20, frame 0 is 16x16)"
    assert q[11].startswith("unreadable: not an image (text.gif")
    assert counts["reasons"]["frames: expected 4, got 3"] == 1 and sum(counts["reasons"].values()) == 10
    assert json.loads((tmp_path / "out/counts.json").read_text()) == counts
    captions, clips = load_clips(tmp_path / "out")
    assert captions == [CAP, CAP] and clips.shape == (2, 4, 16, 16, 3)
    assert np.array_equal(clips[0], good_gif) and np.array_equal(clips[1], good_png)


def test_any_frame_count_is_accepted_without_an_expectation_and_reruns_are_identical(tmp_path):
    src, _, _ = _source(tmp_path)
    a = ingest_clips(src, tmp_path / "o1", ClipPolicy(max_side=64))
    ingest_clips(src, tmp_path / "o2", ClipPolicy(max_side=64))
    assert a["kept"] == 3  # the 3-frame clip is kept now
    for name in ("clips.parquet", "quarantine.parquet", "counts.json"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    with pytest.raises(ValueError, match="different shapes"):
        load_clips(tmp_path / "o1")


def test_a_bad_source_names_the_file_and_the_column(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(VideoSourceError, match="no captions.parquet or captions.csv"):
        ingest_clips(tmp_path / "s", tmp_path / "out")
    pd.DataFrame({"clip_id": ["a"], "text": ["x"], "path": ["p"]}).to_csv(tmp_path / "s/captions.csv", index=False)
    with pytest.raises(VideoSourceError, match=r"captions.csv: missing column\(s\) \['caption'\]"):
        ingest_clips(tmp_path / "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def _mp4(path, n, size=16, codec="mpeg4"):
    """A real video file written by PyAV (ffmpeg's mpeg4 encoder): flat frames of rising grey."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=8)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 + 20 * i, np.uint8),
                                                           format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_video_files_are_read_sampled_uniformly_and_bad_ones_quarantined(tmp_path):
    src = tmp_path / "src"
    (src / "clips").mkdir(parents=True)
    _mp4(src / "clips/long.mp4", 10)
    _mp4(src / "clips/short.mp4", 3)
    _mp4(src / "clips/big.mp4", 2, size=64)
    (src / "clips/junk.mp4").write_bytes(b"not a video at all" * 10)
    full = (src / "clips/long.mp4").read_bytes()
    (src / "clips/cut.mp4").write_bytes(full[: len(full) // 3])  # cut before the index (moov) of the file
    (src / "clips/half.mp4").write_bytes(full[: len(full) // 2])
    rows = [("long", "clips/long.mp4"), ("short", "clips/short.mp4"), ("big", "clips/big.mp4"),
            ("junk", "clips/junk.mp4"), ("cut", "clips/cut.mp4"), ("half", "clips/half.mp4")]
    pd.DataFrame([(i, CAP, p) for i, p in rows], columns=["clip_id", "caption", "path"]).to_csv(
        src / "captions.csv", index=False)
    counts = ingest_clips(src, tmp_path / "out", ClipPolicy(frames=4, max_side=32, sample="uniform"))
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] == 6
    q = pd.read_parquet(tmp_path / "out/quarantine.parquet").set_index("clip_id").reason
    assert q["short"] == "frames: expected at least 4, got 3"
    assert q["big"].startswith("resolution: 64x64 exceeds max_side=32")
    assert q["junk"].startswith("unreadable: not a video")
    assert q["cut"] == "unreadable: no decodable video stream (cut.mp4)"
    assert q["half"] == "unreadable: no decodable video stream (half.mp4)"
    caps, clips = load_clips(tmp_path / "out")
    assert clips.shape == (1, 4, 16, 16, 3)
    # frames 0, 3, 6, 9 of ten (evenly spaced, both ends kept): greys 10, 70, 130, 190 up to the codec's loss
    assert np.allclose(clips[0].mean(axis=(1, 2, 3)), [10, 70, 130, 190], atol=4)
    from seppo.data.video_ingest import ClipRejected, read_clip

    with pytest.raises(ClipRejected, match="frames: expected 4, got 10"):  # exact: a longer clip is refused
        read_clip(src / "clips/long.mp4", ClipPolicy(frames=4))
