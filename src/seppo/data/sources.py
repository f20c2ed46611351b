"""Reading a Pick-a-Pic v2 style source chunk by chunk: parquet shards, webdataset tars, `datasets`.

Every reader yields `Chunk`s of at most ``batch_rows`` rows, so memory stays bounded however large
the source is. A shard that cannot be read yields one Chunk with ``error`` set (and no rows):
the ingest records it instead of dropping it silently.
"""

from __future__ import annotations

import glob
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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


class SourceNotFound(FileNotFoundError):
    """No readable source where params point; the message says what was looked for."""


@dataclass
class Chunk:
    shard: str  # a path (or dataset id + split) naming where the rows come from
    start_row: int  # row number of the chunk's first row inside its shard
    table: pa.Table | None  # None when the shard could not be read
    error: str | None = None
    missing_columns: tuple[str, ...] = ()


def _not_found(source: str, fmt: str) -> SourceNotFound:
    return SourceNotFound(
        f"ingest.source={source!r} (format {fmt}): no readable source found. Looked for parquet "
        "shards (a folder of *.parquet, a glob or a file), webdataset tars (*.tar), a `datasets` "
        "save_to_disk folder, or a Hub dataset id. The official Hub copy of Pick-a-Pic v2 "
        f"({PICKAPIC_HUB_ID}) is offline; point params at a local mirror, e.g. "
        "`dvc exp run -S ingest.source=/data/pickapic_v2/data` (or edit ingest.source in params.yaml)."
    )


def _expand(source: str, suffix: str) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        return sorted(x for x in p.iterdir() if x.name.endswith(suffix))
    if p.is_file():
        return [p]
    return sorted(Path(x) for x in glob.glob(source) if x.endswith(suffix))


def detect_format(source: str) -> str:
    """What `source_format: auto` resolves to."""
    p = Path(source)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
        return "datasets"
    if _expand(source, ".parquet"):
        return "parquet"
    if _expand(source, ".tar"):
        return "webdataset"
    if p.is_dir() or p.is_file():
        # A folder with shards of unknown type: let the parquet reader name each bad shard.
        return "parquet"
    if not p.exists() and source.count("/") == 1 and not source.startswith((".", "/")):
        return "datasets"  # looks like a Hub id
    raise _not_found(source, "auto")


def iter_chunks(source: str, fmt: str, batch_rows: int, split: str = "train",
                revision: str | None = None) -> Iterator[Chunk]:
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "parquet":
        yield from _parquet(source, batch_rows)
    elif fmt == "webdataset":
        yield from _webdataset(source, batch_rows)
    elif fmt == "datasets":
        yield from _datasets(source, batch_rows, split, revision)
    else:  # pragma: no cover - config validation prevents it
        raise ValueError(f"unknown source format {fmt!r}")


def _parquet(source: str, batch_rows: int) -> Iterator[Chunk]:
    p = Path(source)
    shards = sorted(x for x in p.iterdir() if x.is_file() and not x.name.startswith(".")) \
        if p.is_dir() else _expand(source, ".parquet")
    if not shards:
        raise _not_found(source, "parquet")
    for shard in shards:
        try:
            pf = pq.ParquetFile(shard)
        except Exception as err:  # noqa: BLE001 - any unreadable shard is recorded, not fatal here
            yield Chunk(str(shard), 0, None, error=f"not a readable parquet file: {err}")
            continue
        names = set(pf.schema_arrow.names)
        missing = tuple(c for c in REQUIRED_COLUMNS if c not in names)
        columns = [c for c in REQUIRED_COLUMNS if c in names]
        start = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield Chunk(str(shard), start, pa.Table.from_batches([batch]), missing_columns=missing)
                start += batch.num_rows
        except Exception as err:  # noqa: BLE001
            yield Chunk(str(shard), start, None, error=f"parquet read failed at row {start}: {err}")


def _wds_row(key: str, members: dict[str, bytes]) -> dict:
    meta = json.loads(members.get("json", b"{}").decode("utf-8"))
    for i in (0, 1):
        for ext in (f"jpg_{i}", f"{i}.jpg", f"{i}.jpeg", f"{i}.png"):
            if ext in members:
                meta[f"jpg_{i}"] = members[ext]
                break
    meta.setdefault("__key__", key)
    return meta


def _webdataset(source: str, batch_rows: int) -> Iterator[Chunk]:
    """Tars in the webdataset convention: members `<key>.json` (row fields), `<key>.jpg_0/1`."""
    shards = _expand(source, ".tar")
    if not shards:
        raise _not_found(source, "webdataset")
    for shard in shards:
        rows: list[dict] = []
        start = 0
        try:
            with tarfile.open(shard, "r|*") as tar:
                key, members = None, {}
                for m in tar:
                    if not m.isfile():
                        continue
                    name = Path(m.name).name
                    k, _, ext = name.partition(".")
                    if key is not None and k != key:
                        rows.append(_wds_row(key, members))
                        members = {}
                    key = k
                    members[ext] = tar.extractfile(m).read()
                    if len(rows) >= batch_rows:
                        yield _rows_chunk(str(shard), start, rows)
                        start += len(rows)
                        rows = []
                if key is not None:
                    rows.append(_wds_row(key, members))
        except Exception as err:  # noqa: BLE001
            yield Chunk(str(shard), start, None, error=f"not a readable tar file: {err}")
            continue
        if rows:
            yield _rows_chunk(str(shard), start, rows)


def _rows_chunk(shard: str, start: int, rows: list[dict]) -> Chunk:
    present = set().union(*(r.keys() for r in rows))
    missing = tuple(c for c in REQUIRED_COLUMNS if c not in present)
    cols = {c: [r.get(c) for r in rows] for c in REQUIRED_COLUMNS if c in present}
    return Chunk(shard, start, pa.table(cols), missing_columns=missing)


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
    except Exception as err:  # noqa: BLE001 - offline hub, missing folder, bad split...
        raise SourceNotFound(f"{_not_found(source, 'datasets')} ({type(err).__name__}: {err})") from None
    name = f"{source}[{split}]"
    start = 0
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
