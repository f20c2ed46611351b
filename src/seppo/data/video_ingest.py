"""Ingest of a text-to-video set of winning clips: every row of the captions table kept or quarantined.

The source format (a folder; the embedded video world writes it, a ChronoMagic-style mirror can be
arranged into it):
  captions.csv | captions.parquet   one row per clip: clip_id, caption, path
  <path>                            relative to the folder: a folder of frame images (png / jpg / webp,
                                    in file-name order), one animated file (gif / webp / png), or a video
                                    file (mp4 / webm / mkv / mov / avi, decoded with PyAV: `seppo[video]`)
Outputs (written aside, then swapped in: a killed ingest leaves the previous outputs):
  clips.parquet       one row per kept clip: clip_id, caption, the frames as raw uint8 bytes
                      (n_frames x height x width x 3), sha256 of those bytes, the source row and path
  quarantine.parquet  one row per rejected row: row, clip_id, path, reason
  counts.json         rows_in = kept + quarantined, and the reasons counted by their stable key
Checks, in order (the first failing one is the row's reason; the part before " (" is the key):
caption (as the image ingest), clip_id (missing, duplicate), path (missing, outside the folder, not
found), resolution (a frame larger than max_side, read from the header before any pixel is decoded),
unreadable (a frame that does not decode: truncated or not an image), frames (zero length, sizes that
differ between frames, a frame count other than the expected one). With ``sample="uniform"`` (long
time-lapse videos, as MagicTime trains) a clip of n >= F frames keeps F frames evenly spaced over its
length (indices round(linspace(0, n - 1, F))); fewer than F frames is the row's reason.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io_utils import atomic_dir, write_json
from .checks import check_caption

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
ANIMATED_SUFFIXES = (".gif", ".webp", ".png")
CONTAINER_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
COLUMNS = ("clip_id", "caption", "path")


class VideoSourceError(ValueError):
    """The source as a whole is unusable (no captions table, a missing column): names the file and field."""


class ClipRejected(ValueError):
    """One clip's reason for quarantine."""


@dataclass(frozen=True)
class ClipPolicy:
    frames: int | None = None  # the expected frame count; None accepts any count >= 1
    sample: str = "exact"  # exact: the clip must have `frames` frames; uniform: keep `frames` evenly spaced ones
    max_side: int = 1024  # the largest frame side accepted (checked from the header)
    max_caption_chars: int = 1000


def _open(path: Path, policy: ClipPolicy, label: str):
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ClipRejected(f"resolution: decompression-bomb size ({label}: {str(err)[:80]})") from None
    except Exception as err:  # noqa: BLE001 - any decoder error is the row's reason, never a crash
        raise ClipRejected(f"unreadable: not an image ({label}: {type(err).__name__})") from None
    w, h = im.size
    if max(w, h) > policy.max_side:
        im.close()
        raise ClipRejected(f"resolution: {w}x{h} exceeds max_side={policy.max_side} ({label})")
    return im


def _rgb(im, label: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Exception as err:  # noqa: BLE001
        raise ClipRejected(f"unreadable: frame does not decode ({label}: {type(err).__name__})") from None


def read_clip(path: Path, policy: ClipPolicy = ClipPolicy()) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of a frame folder or an animated file; ClipRejected with the reason."""
    from PIL import ImageSequence

    frames: list[np.ndarray] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise ClipRejected(f"frames: zero length (no {'/'.join(FRAME_SUFFIXES)} files in {path.name}/)")
        for f in files:
            with _open(f, policy, f"{path.name}/{f.name}") as im:
                frames.append(_rgb(im, f"{path.name}/{f.name}"))
    elif path.suffix.lower() in CONTAINER_SUFFIXES:
        frames = _read_container(path, policy)
    else:
        if path.suffix.lower() not in ANIMATED_SUFFIXES:
            raise ClipRejected(f"path: not a frame folder, an animated {'/'.join(ANIMATED_SUFFIXES)} file or a "
                               f"{'/'.join(CONTAINER_SUFFIXES)} video ({path.name})")
        with _open(path, policy, path.name) as im:
            try:
                for k, frame in enumerate(ImageSequence.Iterator(im)):
                    frames.append(_rgb(frame.copy(), f"{path.name} frame {k}"))
            except ClipRejected:
                raise
            except Exception as err:  # noqa: BLE001 - a truncated animation fails mid-sequence
                raise ClipRejected(f"unreadable: truncated after {len(frames)} frames ({path.name}: "
                                   f"{type(err).__name__})") from None
        if not frames:
            raise ClipRejected(f"frames: zero length ({path.name})")
    sizes = [f.shape[:2] for f in frames]
    if any(s != sizes[0] for s in sizes):
        k = next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise ClipRejected(f"frames: sizes differ (frame {k} is {sizes[k][1]}x{sizes[k][0]}, frame 0 is "
                           f"{sizes[0][1]}x{sizes[0][0]})")
    if policy.frames is not None and policy.sample == "uniform":
        if len(frames) < policy.frames:
            raise ClipRejected(f"frames: expected at least {policy.frames}, got {len(frames)}")
        frames = [frames[i] for i in uniform_indices(len(frames), policy.frames)]
    if policy.frames is not None and len(frames) != policy.frames:
        raise ClipRejected(f"frames: expected {policy.frames}, got {len(frames)}")
    return np.stack(frames)


def uniform_indices(n: int, f: int) -> list[int]:
    """``f`` frame indices evenly spaced over ``n`` frames, first and last included."""
    return [int(i) for i in np.rint(np.linspace(0, n - 1, f))]


def _read_container(path: Path, policy: ClipPolicy) -> list[np.ndarray]:
    """Every frame of a video file (PyAV), the resolution checked from the stream header before decoding."""
    try:
        import av
    except ImportError:
        raise VideoSourceError(f"{path}: reading {path.suffix} files needs PyAV (pip install 'seppo[video]'), or "
                               "convert the clips to frame folders") from None
    try:
        container = av.open(str(path))
    except Exception as err:  # noqa: BLE001 - any demuxer error is the row's reason
        raise ClipRejected(f"unreadable: not a video ({path.name}: {type(err).__name__})") from None
    with container:
        stream = container.streams.video[0] if container.streams.video else None
        ctx = getattr(stream, "codec_context", None)
        if ctx is None:  # e.g. an mp4 cut before its index: the demuxer finds no decodable video stream
            raise ClipRejected(f"unreadable: no decodable video stream ({path.name})")
        w, h = ctx.width, ctx.height
        if max(w, h) > policy.max_side:
            raise ClipRejected(f"resolution: {w}x{h} exceeds max_side={policy.max_side} ({path.name})")
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
        except Exception as err:  # noqa: BLE001 - a truncated file fails mid-stream
            raise ClipRejected(f"unreadable: truncated after {len(frames)} frames ({path.name}: "
                               f"{type(err).__name__})") from None
    if not frames:
        raise ClipRejected(f"frames: zero length ({path.name})")
    return frames


def read_captions(source: Path) -> pd.DataFrame:
    """The captions table of a source folder, every column as stored; VideoSourceError names what is missing."""
    found = [p for p in (source / "captions.parquet", source / "captions.csv") if p.exists()]
    if not source.is_dir():
        raise VideoSourceError(f"video source {source} is not a folder")
    if not found:
        raise VideoSourceError(f"{source}: no captions.parquet or captions.csv (columns {', '.join(COLUMNS)})")
    path = found[0]
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=object,
                                                                                keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise VideoSourceError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    return table


def _row_reason(row: dict, source: Path, seen: dict[str, int], policy: ClipPolicy
                ) -> tuple[str | None, np.ndarray | None]:
    reason = check_caption(row["caption"], policy.max_caption_chars)
    if reason:
        return reason, None
    cid = row["clip_id"]
    if not isinstance(cid, str) or not cid.strip():
        return "clip_id: missing", None
    if cid in seen:
        return f"clip_id: duplicate (of row {seen[cid]})", None
    rel = row["path"]
    if not isinstance(rel, str) or not rel.strip():
        return "path: missing", None
    target = (source / rel).resolve()
    if source.resolve() not in target.parents:
        return f"path: outside the source folder ({rel})", None
    if not target.exists():
        return f"path: not found ({rel})", None
    try:
        return None, read_clip(target, policy)
    except ClipRejected as err:
        return str(err), None


def ingest_clips(source: str | Path, out: str | Path, policy: ClipPolicy = ClipPolicy()) -> dict:
    """Read every row of the source's captions table; write clips / quarantine / counts to ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = Path(source)
    table = read_captions(source)
    kept, quarantined, seen = [], [], {}
    for i, row in enumerate(table.to_dict("records")):
        reason, clip = _row_reason(row, source, seen, policy)
        if reason is not None:
            quarantined.append({"row": i, "clip_id": str(row.get("clip_id")), "path": str(row.get("path")),
                                "reason": reason})
            continue
        seen[row["clip_id"]] = i
        data = np.ascontiguousarray(clip).tobytes()
        kept.append({"clip_id": row["clip_id"], "caption": row["caption"].strip(), "frames": data,
                     "sha256": hashlib.sha256(data).hexdigest(), "n_frames": clip.shape[0],
                     "height": clip.shape[1], "width": clip.shape[2], "row": i, "path": row["path"]})
    counts = {"rows_in": len(table), "kept": len(kept), "quarantined": len(quarantined),
              "reasons": dict(sorted(Counter(q["reason"].split(" (")[0] for q in quarantined).items()))}
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"], counts  # every row has one outcome
    schema = pa.schema([("clip_id", pa.string()), ("caption", pa.string()), ("frames", pa.binary()),
                        ("sha256", pa.string()), ("n_frames", pa.int32()), ("height", pa.int32()),
                        ("width", pa.int32()), ("row", pa.int64()), ("path", pa.string())])
    qschema = pa.schema([("row", pa.int64()), ("clip_id", pa.string()), ("path", pa.string()),
                         ("reason", pa.string())])
    with atomic_dir(out) as tmp:
        pq.write_table(pa.Table.from_pylist(kept, schema=schema), tmp / "clips.parquet")
        pq.write_table(pa.Table.from_pylist(quarantined, schema=qschema), tmp / "quarantine.parquet")
        write_json(tmp / "counts.json", counts)
    return counts


def load_clips(out: str | Path, with_ids: bool = False):
    """(captions, clips (N, F, H, W, 3) uint8) of an ingest output whose clips share one shape; with ``with_ids``
    also the clip ids, (captions, clips, ids)."""
    import pyarrow.parquet as pq

    t = pq.read_table(Path(out) / "clips.parquet").to_pylist()
    shapes = {(r["n_frames"], r["height"], r["width"]) for r in t}
    if len(shapes) > 1:
        raise ValueError(f"{out}/clips.parquet: clips of different shapes {sorted(shapes)}; resize before training")
    clips = [np.frombuffer(r["frames"], np.uint8).reshape(r["n_frames"], r["height"], r["width"], 3) for r in t]
    arr = np.stack(clips) if clips else np.zeros((0, 1, 1, 1, 3), np.uint8)
    caps = [r["caption"] for r in t]
    return (caps, arr, [r["clip_id"] for r in t]) if with_ids else (caps, arr)


def run_video_ingest(cfg, out: str | Path, metrics: str | Path) -> dict:
    """The video ingest stage (params ``video``): winners (and losers, when ``video.losers`` is set) into
    ``out/winners`` and ``out/losers``, each with its quarantine and counts; fails when no winner is kept."""
    from ..io_utils import write_json

    policy = ClipPolicy(frames=cfg.frames, max_side=cfg.max_side, sample=cfg.sample_frames)
    counts = {"winners": ingest_clips(cfg.source, Path(out) / "winners", policy)}
    if cfg.losers:
        counts["losers"] = ingest_clips(cfg.losers, Path(out) / "losers", policy)
    write_json(metrics, counts)
    if counts["winners"]["kept"] == 0:
        raise VideoSourceError(f"{cfg.source}: every one of {counts['winners']['rows_in']} clips was quarantined "
                               f"(reasons {counts['winners']['reasons']}; see {Path(out) / 'winners/quarantine.parquet'})")
    return counts
