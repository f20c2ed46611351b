"""Reading a Pick-a-Pic v2 style source chunk by chunk: parquet shards, webdataset tars, `datasets`.

`resolve_source` decides, from params and what is on disk, which files are shards (and lists the
files it ignores, e.g. a README or `_SUCCESS` next to the shards); `iter_chunks` reads them. Every
reader yields `Chunk`s of at most ``batch_rows`` rows of plain Python values, so memory stays
bounded however large the source is. Nothing a shard holds can abort the read:
  - a value that cannot be decoded (invalid UTF-8, an int beyond int64...) becomes a `BadValue`,
    which the ingest quarantines naming its field;
  - a shard that cannot be opened yields one Chunk with ``error`` set and no rows;
  - a parquet row group that cannot be read yields a Chunk with ``error`` and ``lost`` = its row
    count from the footer, so the rows it held are counted (as lost), not silently dropped.
"""

from __future__ import annotations

import glob
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..locations import SourceError, check_hub_revision, is_hub_id  # noqa: F401  (also this module's interface)

PICKAPIC_HUB_ID = "yuvalkirstain/pickapic_v2"
# Columns ingest reads; anything else (e.g. `__index_level_0__`) is ignored.
REQUIRED_COLUMNS = (
    "caption",
    "jpg_0",
    "jpg_1",
    "label_0",
    "label_1",
    "has_label",
    "are_different",
    "image_0_uid",
    "image_1_uid",
    "ranking_id",
)
SHARD_SUFFIX = {"parquet": ".parquet", "webdataset": ".tar"}
# Hub-style shard names carry their split: `train-00000-of-00645-<hash>.parquet`
_SPLIT_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-\d+-of-\d+")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")


class SourceNotFound(SourceError, FileNotFoundError):
    """No readable source where params point; the message says what was looked for."""


class BadValue:
    """A cell that could not be turned into a Python value; ingest quarantines its row."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"BadValue({self.reason!r})"


@dataclass
class Chunk:
    shard: str  # a path (or dataset id + split) naming where the rows come from
    start_row: int  # row number of the chunk's first row inside its shard
    rows: list[dict] | None  # None when the shard (or this part of it) could not be read
    error: str | None = None
    missing_columns: tuple[str, ...] = ()
    lost: int = 0  # rows the shard's metadata says exist but could not be read


@dataclass
class Source:
    """What `ingest.source` resolves to: the format, its shards, and the files left out."""

    fmt: str
    shards: list[str]
    ignored: list[dict] = field(default_factory=list)  # {"path", "why"}
    local: bool = True  # False: a Hub dataset id


def clean_error(err: BaseException) -> str:
    """An exception as a stable one-line text: no memory addresses, no line breaks."""
    text = _ADDRESS.sub("", str(err))
    return f"{type(err).__name__}: {' '.join(text.split())}"


def _not_found(source: str, fmt: str, ignored: list[dict] | None = None) -> SourceNotFound:
    seen = ""
    if ignored:
        names = ", ".join(Path(x["path"]).name for x in ignored[:5])
        seen = f" Found only files that are not shards ({names}{', ...' if len(ignored) > 5 else ''})."
    return SourceNotFound(
        f"ingest.source={source!r} (format {fmt}): no readable source found.{seen} Looked for parquet "
        "shards (a folder of *.parquet, a glob or a file), webdataset tars (*.tar), a `datasets` "
        "save_to_disk folder, or a Hub dataset id. The official Hub copy of Pick-a-Pic v2 "
        f"({PICKAPIC_HUB_ID}) is offline; point params at a local mirror, e.g. "
        "`dvc exp run -S ingest.source=/data/pickapic_v2/data` (or edit ingest.source in params.yaml)."
    )


def _candidates(source: str) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        return sorted(p.iterdir())
    if p.is_file():
        return [p]
    return sorted(Path(x) for x in glob.glob(source))


def detect_format(source: str) -> str:
    """What `source_format: auto` resolves to."""
    p = Path(source)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
        return "datasets"
    files = [x for x in _candidates(source) if x.is_file()]
    if any(x.name.endswith(".parquet") for x in files):
        return "parquet"
    if any(x.name.endswith(".tar") for x in files):
        return "webdataset"
    if is_hub_id(source):
        return "datasets"
    raise _not_found(source, "auto", [{"path": str(x), "why": "not a shard"} for x in files])


def resolve_source(source: str, fmt: str, split: str = "train", revision: str | None = None) -> Source:
    """The shards `ingest.source` names, and every file next to them that is left out (with why)."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "datasets":
        if Path(source).is_dir():
            return Source(fmt, [source])
        if not is_hub_id(source):
            raise _not_found(source, fmt)
        check_hub_revision(source, revision)
        return Source(fmt, [source], local=False)
    suffix = SHARD_SUFFIX[fmt]
    shards, ignored = [], []
    for x in _candidates(source):
        if not x.is_file():
            ignored.append({"path": str(x), "why": "a folder"})
        elif x.name.startswith(".") or not x.name.endswith(suffix):
            ignored.append({"path": str(x), "why": f"not a {suffix} shard"})
        else:
            shards.append(x)
    # A mirror of the Hub layout holds every split side by side: keep ingest.split's shards
    splits = {x: m.group("split") for x in shards if (m := _SPLIT_NAME.match(x.name))}
    if splits and any(s == split for s in splits.values()):
        for x in [x for x in shards if x in splits and splits[x] != split]:
            shards.remove(x)
            ignored.append({"path": str(x), "why": f"split {splits[x]!r}, not ingest.split={split!r}"})
    elif splits and len(splits) == len(shards):
        raise SourceNotFound(
            f"ingest.source={source!r}: no shard of split {split!r} (ingest.split); the shard names "
            f"carry the splits {sorted(set(splits.values()))}."
        )
    if not shards:
        raise _not_found(source, fmt, ignored)
    ignored.sort(key=lambda d: d["path"])
    return Source(fmt, [str(x) for x in shards], ignored)


def iter_chunks(src: Source, batch_rows: int, split: str = "train",
                revision: str | None = None) -> Iterator[Chunk]:
    if src.fmt == "parquet":
        for shard in src.shards:
            yield from _parquet(shard, batch_rows)
    elif src.fmt == "webdataset":
        for shard in src.shards:
            yield from _webdataset(shard, batch_rows)
    elif src.fmt == "datasets":
        yield from _datasets(src.shards[0], batch_rows, split, revision)
    else:  # pragma: no cover - config validation prevents it
        raise ValueError(f"unknown source format {src.fmt!r}")


def _decode_text(v):
    if v is None:
        return None
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadValue(f"invalid UTF-8 (byte 0x{v[err.start]:02x} at position {err.start})")


def _column_values(col: pa.Array) -> list:
    """A column as Python values; a cell that cannot be converted becomes a BadValue."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # to_pylist() would raise on the first invalid UTF-8 cell and lose the whole chunk:
        # take the raw bytes (no validation) and decode cell by cell
        raw = col.cast(pa.large_binary() if pa.types.is_large_string(t) else pa.binary())
        return [_decode_text(v) for v in raw.to_pylist()]
    try:
        return col.to_pylist()
    except Exception:  # noqa: BLE001 - find the cells at fault
        out = []
        for i in range(len(col)):
            try:
                out.append(col[i].as_py())
            except Exception as err:  # noqa: BLE001
                out.append(BadValue(f"unreadable value ({clean_error(err)})"))
        return out


def table_rows(table: pa.Table | pa.RecordBatch) -> list[dict]:
    names = table.schema.names
    cols = [_column_values(c) for c in table.columns]
    return [dict(zip(names, vals)) for vals in zip(*cols)] if cols else []


def _parquet(shard: str, batch_rows: int) -> Iterator[Chunk]:
    try:
        # a small read buffer: the reader holds one row group's pages, not several copies of them
        pf = pq.ParquetFile(shard, pre_buffer=False, buffer_size=1 << 20)
        meta = pf.metadata
    except Exception as err:  # noqa: BLE001 - any unreadable shard is recorded, not fatal here
        yield Chunk(shard, 0, None, error=f"not a readable parquet file ({clean_error(err)})")
        return
    names = set(pf.schema_arrow.names)
    missing = tuple(c for c in REQUIRED_COLUMNS if c not in names)
    columns = [c for c in REQUIRED_COLUMNS if c in names]
    start = 0
    # Row group by row group: a corrupt group costs its own rows (counted from the footer), and
    # the groups after it are still read.
    for g in range(meta.num_row_groups):
        n, done = meta.row_group(g).num_rows, 0
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=columns):
                rows = table_rows(batch)
                del batch  # the rows hold their own copies
                yield Chunk(shard, start + done, rows, missing_columns=missing)
                done += len(rows)
                del rows
        except Exception as err:  # noqa: BLE001
            yield Chunk(shard, start + done, None, lost=n - done,
                        error=f"row group {g} unreadable from row {start + done}, {n - done} of its "
                              f"{n} rows lost ({clean_error(err)})")
        start += n
        pa.default_memory_pool().release_unused()  # hand the row group's buffers back to the OS


def _wds_row(key: str, members: dict[str, bytes]) -> dict:
    try:
        meta = json.loads(members.get("json", b"{}").decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except Exception as err:  # noqa: BLE001 - one bad sample, not a bad tar
        meta = {"__error__": f"json: not a readable JSON object ({clean_error(err)})"}
    for i in (0, 1):
        for ext in (f"jpg_{i}", f"{i}.jpg", f"{i}.jpeg", f"{i}.png", f"{i}.webp"):
            if ext in members:
                meta[f"jpg_{i}"] = members[ext]
                break
    meta.setdefault("__key__", key)
    return meta


def _webdataset(shard: str, batch_rows: int) -> Iterator[Chunk]:
    """A tar in the webdataset convention: members `<key>.json` (row fields), `<key>.jpg_0/1`."""
    rows: list[dict] = []
    start = 0
    try:
        with tarfile.open(shard, "r|*") as tar:
            key, members = None, {}
            for m in tar:
                if not m.isfile():
                    continue
                k, _, ext = Path(m.name).name.partition(".")
                if key is not None and k != key:
                    rows.append(_wds_row(key, members))
                    members = {}
                key = k
                members[ext] = tar.extractfile(m).read()
                if len(rows) >= batch_rows:
                    yield _rows_chunk(shard, start, rows)
                    start += len(rows)
                    rows = []
            if key is not None:
                rows.append(_wds_row(key, members))
    except Exception as err:  # noqa: BLE001
        if rows:  # the samples read before the damage are kept
            yield _rows_chunk(shard, start, rows)
            start += len(rows)
        # a tar has no row count: what followed the damage cannot be counted
        yield Chunk(shard, start, None, error=f"tar unreadable from sample {start} ({clean_error(err)})")
        return
    if rows:
        yield _rows_chunk(shard, start, rows)


def _rows_chunk(shard: str, start: int, rows: list[dict]) -> Chunk:
    present = set().union(*(r.keys() for r in rows))
    missing = tuple(c for c in REQUIRED_COLUMNS if c not in present)
    keep = [*REQUIRED_COLUMNS, "__error__"]
    return Chunk(shard, start, [{c: r.get(c) for c in keep if c in r} for r in rows],
                 missing_columns=missing)


def _datasets(source: str, batch_rows: int, split: str, revision: str | None) -> Iterator[Chunk]:
    import datasets  # heavy; only when params ask for it

    p = Path(source)
    try:
        if p.is_dir():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(source, split=split, revision=revision, streaming=True)
        # Image columns as their stored bytes: decoding and re-encoding would change the pixels
        for c in ("jpg_0", "jpg_1"):
            if isinstance((ds.features or {}).get(c), datasets.Image):
                ds = ds.cast_column(c, datasets.Image(decode=False))
    except Exception as err:  # noqa: BLE001 - offline hub, missing folder, bad split...
        raise SourceNotFound(f"{_not_found(source, 'datasets')} ({clean_error(err)})") from None
    name = f"{source}[{split}]"
    start = 0
    if isinstance(ds, datasets.Dataset):  # on disk: Arrow batches, decoded cell by cell
        for batch in ds.with_format("arrow").iter(batch_size=batch_rows):
            cols = [c for c in REQUIRED_COLUMNS if c in batch.column_names]
            rows = table_rows(batch.select(cols))
            chunk = _rows_chunk(name, start, rows)
            chunk.missing_columns = tuple(c for c in REQUIRED_COLUMNS if c not in batch.column_names)
            yield chunk
            start += len(rows)
        return
    for batch in ds.iter(batch_size=batch_rows):
        rows = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
        yield _rows_chunk(name, start, rows)
        start += len(rows)


def load_image_bytes(value) -> bytes | None:
    """Image bytes from a column value: raw bytes, or a `datasets` Image dict {'bytes': ...}."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "save"):  # a decoded PIL image from `datasets`
        buf = io.BytesIO()
        value.save(buf, format=value.format or "PNG")
        return buf.getvalue()
    return None
