"""The ingest stage: winners (and losers) out of a Pick-a-Pic v2 style source, with accounting.

Streams the source chunk by chunk and writes four parquet tables incrementally:
  winners.parquet     one row per kept winner (image bytes, caption, where it came from)
  losers.parquet      the kept rows' losers, for the Diffusion-DPO baseline (SePPO never reads it)
  quarantine.parquet  every rejected row or shard with its reason and source location
  profile.parquet     one row per source row, no image bytes: what the checks saw, the row's status
Every source row gets exactly one status, so rows_in = kept + tie + excluded + duplicate +
quarantined + lost holds by construction (and is asserted before the outputs are published). `lost`
counts the rows of a parquet row group that could not be read: the shard's footer says how many
there were, so they are counted (and listed in the quarantine as one `table = "shard"` entry)
instead of vanishing. Nothing in a row can stop the ingest: every value is checked for its type
before it is used, and a reason never embeds a memory address, so two runs over the same source
write byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import IngestConfig
from ..io_utils import atomic_dir, write_json
from .checks import (ImagePolicy, bad_value_reason, check_bool, check_caption, check_labels,
                     check_ranking_id, inspect_image)
from .sources import REQUIRED_COLUMNS, iter_chunks, load_image_bytes, resolve_source

STATUSES = ("kept", "tie", "excluded", "duplicate", "quarantined", "lost")

WINNERS_SCHEMA = pa.schema(
    [
        ("winner_uid", pa.string()),
        ("caption", pa.string()),
        ("image", pa.binary()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("ranking_id", pa.int64()),
        ("source_field", pa.string()),
        ("shard", pa.string()),
        ("row", pa.int64()),
    ]
)
LOSERS_SCHEMA = pa.schema(
    [
        ("winner_uid", pa.string()),
        ("loser_uid", pa.string()),
        ("caption", pa.string()),
        ("image", pa.binary()),
        ("sha256", pa.string()),
        ("ranking_id", pa.int64()),
        ("shard", pa.string()),
        ("row", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("row", pa.int64()),  # -1: the whole shard
        ("table", pa.string()),  # winners | losers | shard
        ("field", pa.string()),
        ("reason", pa.string()),
        ("ranking_id", pa.int64()),
        ("caption", pa.string()),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("row", pa.int64()),
        ("ranking_id", pa.int64()),
        ("caption_chars", pa.int64()),
        ("caption_has_nul", pa.bool_()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        ("winner_field", pa.string()),
        ("winner_uid", pa.string()),
        ("image_bytes", pa.int64()),
        ("image_format", pa.string()),
        ("image_mode", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("decodable", pa.bool_()),
        ("conversion", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


def policy_of(cfg: IngestConfig) -> ImagePolicy:
    return ImagePolicy(cfg.min_side, cfg.max_side, tuple(cfg.allowed_formats), tuple(cfg.allowed_modes))


def reason_key(reason: str) -> str:
    """A reason without its row-specific detail: everything before the final ` (...)`."""
    if reason.endswith(")") and " (" in reason:
        return reason[: reason.rindex(" (")]
    return reason


def _field(reason: str) -> str:
    return reason.split(":", 1)[0] if ":" in reason else ""


def _text(x) -> str | None:
    """A string safe to write to parquet (lone surrogates replaced), or None."""
    return x.encode("utf-8", "replace").decode("utf-8") if isinstance(x, str) else None


def _float_or_none(x):
    try:
        x = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return x


class _Writer:
    """A parquet table written in pieces: flushed every 512 rows or 16 MB of images (bounded memory)."""

    MAX_ROWS, MAX_BYTES = 512, 16 << 20

    def __init__(self, path: Path, schema: pa.Schema):
        self.schema, self.rows, self.nbytes = schema, [], 0
        self._w = pq.ParquetWriter(path, schema)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.nbytes += len(row.get("image") or b"")
        if len(self.rows) >= self.MAX_ROWS or self.nbytes >= self.MAX_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._w.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows, self.nbytes = [], 0

    def close(self) -> None:
        self.flush()
        self._w.close()


class _State:
    """What ingest remembers across rows: kept (caption, image) pairs and ranking ids seen."""

    def __init__(self):
        # Both grow with the source, so they hold short digests (~250 bytes a row in all, ~0.25 GB
        # for Pick-a-Pic v2's 959k rows), not captions or hashes in hex.
        self.seen: set[bytes] = set()  # digest of (caption, sha256) of kept winners
        # ranking_id -> digests of (caption, image pair, content) + (shard number, row) first seen
        self.rankings: dict[int, bytes] = {}
        self.shards: list[str] = []
        self.formats: Counter = Counter()  # "<format> <mode>" of the kept winners, as read
        self.conversions: Counter = Counter()
        self.loser_conversions: Counter = Counter()


def run_ingest(cfg: IngestConfig, out: Path, metrics: Path) -> dict:
    policy = policy_of(cfg)
    src = resolve_source(cfg.source, cfg.source_format, cfg.split, cfg.revision)
    counts = Counter({s: 0 for s in STATUSES})
    reasons: Counter = Counter()  # quarantined winners only: what validate's "top reasons" lists
    excluded: Counter = Counter()
    loser_reasons: Counter = Counter()
    state = _State()
    shards: dict[str, int] = {}
    damaged: list[str] = []
    losers_kept = 0
    with atomic_dir(out) as tmp:
        w = {
            "winners": _Writer(tmp / "winners.parquet", WINNERS_SCHEMA),
            "losers": _Writer(tmp / "losers.parquet", LOSERS_SCHEMA),
            "quarantine": _Writer(tmp / "quarantine.parquet", QUARANTINE_SCHEMA),
            "profile": _Writer(tmp / "profile.parquet", PROFILE_SCHEMA),
        }
        for chunk in iter_chunks(src, cfg.batch_rows, cfg.split, cfg.revision):
            shards.setdefault(chunk.shard, 0)
            if chunk.rows is None:
                if chunk.shard not in damaged:
                    damaged.append(chunk.shard)
                shards[chunk.shard] += chunk.lost
                counts["lost"] += chunk.lost
                w["quarantine"].add(
                    {"shard": chunk.shard, "row": chunk.start_row if chunk.lost else -1, "table": "shard",
                     "field": "", "reason": chunk.error, "ranking_id": None, "caption": None}
                )
                continue
            shards[chunk.shard] += len(chunk.rows)
            for i, r in enumerate(chunk.rows):
                row_no = chunk.start_row + i
                status, reason, prof, loser_reason = _one_row(r, chunk, cfg, policy, state, w, row_no)
                counts[status] += 1
                if status == "quarantined":
                    reasons[reason_key(reason)] += 1
                    w["quarantine"].add(
                        {"shard": chunk.shard, "row": row_no, "table": "winners",
                         "field": _field(reason), "reason": reason,
                         "ranking_id": prof["ranking_id"], "caption": _text(r.get("caption"))}
                    )
                elif status == "excluded":
                    excluded[reason_key(reason)] += 1
                if status == "kept":
                    if loser_reason is None:
                        losers_kept += 1
                    else:
                        loser_reasons[reason_key(loser_reason)] += 1
                        w["quarantine"].add(
                            {"shard": chunk.shard, "row": row_no, "table": "losers",
                             "field": _field(loser_reason), "reason": loser_reason,
                             "ranking_id": prof["ranking_id"], "caption": _text(r.get("caption"))}
                        )
                prof.update(shard=chunk.shard, row=row_no, status=status, reason=reason)
                w["profile"].add(prof)
        for writer in w.values():
            writer.close()
        rows_in = sum(shards.values())
        if rows_in != sum(counts.values()):  # pragma: no cover - would be a bug in _one_row
            raise AssertionError(f"row accounting broken: {rows_in} in, {dict(counts)}")
        summary = {
            "source": cfg.source,
            "source_format": src.fmt,
            "revision": cfg.revision,
            "rows_in": rows_in,
            **{k: counts[k] for k in STATUSES},
            "losers_kept": losers_kept,
            "shards": len(shards),
            "unreadable_shards": len(damaged),
            "quarantined_share": counts["quarantined"] / rows_in if rows_in else 0.0,
            "image_formats": dict(sorted(state.formats.items())),
            "conversions": dict(sorted(state.conversions.items())),
            "loser_conversions": dict(sorted(state.loser_conversions.items())),
            "reasons": dict(sorted(reasons.items())),
            "excluded_reasons": dict(sorted(excluded.items())),
            "loser_reasons": dict(sorted(loser_reasons.items())),
            "ignored_files": src.ignored,
        }
        write_json(tmp / "counts.json", summary)
    write_json(metrics, {k: v for k, v in summary.items()
                         if k not in ("reasons", "excluded_reasons", "loser_reasons", "source", "revision",
                                      "source_format", "ignored_files")}
               | {"ignored_files": len(src.ignored)})
    return summary


_LOCATION = struct.Struct("<IQ")  # shard number, row


def _digests(r: dict) -> tuple[bytes, bytes, bytes]:
    """Short digests of a row's caption, image pair (uids) and whole content."""
    def d(*values) -> bytes:
        h = hashlib.blake2b(digest_size=8)
        for v in values:
            v = load_image_bytes(v) if isinstance(v, (bytes, dict)) else repr(v).encode("utf-8", "replace")
            h.update(len(v or b"").to_bytes(8, "little") + (v or b""))
        return h.digest()

    return (d(r.get("caption")), d(r.get("image_0_uid"), r.get("image_1_uid")),
            d(*(r.get(c) for c in REQUIRED_COLUMNS)))


def _ranking_conflict(r: dict, rid: int, state: "_State", shard: str, row_no: int):
    """A ranking_id seen before: the same row again (duplicate), or a contradiction (quarantined).

    One ranking is one prompt: a second row of it with another caption, or with the same image
    pair but other bytes, labels or flags, contradicts the first. Another image pair under the
    same caption is a further pair of the same ranking and is kept."""
    cap, pair, content = _digests(r)
    packed = state.rankings.get(rid)
    if packed is None:
        if not state.shards or state.shards[-1] != shard:
            state.shards.append(shard)
        state.rankings[rid] = cap + pair + content + _LOCATION.pack(len(state.shards) - 1, row_no)
        return None
    first = (packed[:8], packed[8:16], packed[16:24], *_LOCATION.unpack(packed[24:]))
    where = f"first at {state.shards[first[3]]} row {first[4]}"
    if content == first[2]:
        return "duplicate", f"ranking_id: the same row again ({where})"
    if cap != first[0]:
        return "quarantined", f"ranking_id: reused by a row with another caption ({where})"
    if pair == first[1]:
        return "quarantined", f"ranking_id: the same image pair again with other content ({where})"
    return None


def _one_row(r, chunk, cfg, policy, state: _State, w, row_no):
    rid_reason, rid = check_ranking_id(r.get("ranking_id"))
    prof = {"ranking_id": rid, "label_0": _float_or_none(r.get("label_0")),
            "label_1": _float_or_none(r.get("label_1"))}
    cap = r.get("caption")
    if isinstance(cap, str):
        prof.update(caption_chars=len(cap.strip()), caption_has_nul="\x00" in cap)
    if chunk.missing_columns:
        return "quarantined", f"{chunk.missing_columns[0]}: column missing from shard (missing: " \
            f"{', '.join(chunk.missing_columns)})", prof, None
    if r.get("__error__"):
        return "quarantined", r["__error__"], prof, None
    for c in REQUIRED_COLUMNS:  # cells the reader could not decode (e.g. invalid UTF-8)
        if reason := bad_value_reason(c, r.get(c)):
            return "quarantined", reason, prof, None
    if rid_reason:
        return "quarantined", rid_reason, prof, None
    conflict = _ranking_conflict(r, rid, state, chunk.shard, row_no)
    if conflict:
        return (*conflict, prof, None)
    reason, has_label = check_bool(r.get("has_label"), "has_label")
    if reason:
        return "quarantined", reason, prof, None
    if not has_label:
        return "excluded", "has_label: false (unlabelled pair)", prof, None
    reason, l0, l1 = check_labels(r.get("label_0"), r.get("label_1"))
    if reason:
        return "quarantined", reason, prof, None
    if l0 == 0.5:
        return "tie", None, prof, None
    reason, different = check_bool(r.get("are_different"), "are_different")
    if reason:
        return "quarantined", reason, prof, None
    if not different:
        return "excluded", "are_different: false (the same image twice)", prof, None
    reason = check_caption(cap, cfg.max_caption_chars)
    if reason:
        return "quarantined", reason, prof, None
    wi = 0 if l0 == 1.0 else 1
    field, lfield = f"jpg_{wi}", f"jpg_{1 - wi}"
    uid, luid = r.get(f"image_{wi}_uid"), r.get(f"image_{1 - wi}_uid")
    for name, v in ((f"image_{wi}_uid", uid), (f"image_{1 - wi}_uid", luid)):
        if v is not None and not isinstance(v, str):
            return "quarantined", f"{name}: not a string ({type(v).__name__})", prof, None
    data, ldata = load_image_bytes(r.get(field)), load_image_bytes(r.get(lfield))
    if data and data == ldata:
        return "quarantined", "are_different: true, but jpg_0 and jpg_1 are the same bytes", prof, None
    info, reason = inspect_image(data, field, policy)
    prof.update(winner_field=field, winner_uid=uid, image_bytes=info.n_bytes,
                image_format=info.format, image_mode=info.mode, width=info.width,
                height=info.height, decodable=info.decodable, conversion=info.conversion)
    if reason:
        return "quarantined", reason, prof, None
    sha = hashlib.sha256(info.data).hexdigest()
    key = hashlib.blake2b(cap.encode("utf-8") + b"\x00" + sha.encode(), digest_size=16).digest()
    if key in state.seen:
        return "duplicate", "the same winner image for the same caption was already kept", prof, None
    state.seen.add(key)
    state.formats[f"{info.format} {info.mode}"] += 1
    if info.conversion:
        state.conversions[info.conversion] += 1
    uid = uid or sha
    prof["winner_uid"] = uid
    w["winners"].add(
        {"winner_uid": uid, "caption": cap, "image": info.data, "sha256": sha, "width": info.width,
         "height": info.height, "ranking_id": rid, "source_field": field,
         "shard": chunk.shard, "row": row_no}
    )
    linfo, loser_reason = inspect_image(ldata, lfield, policy)
    if loser_reason is None:
        if linfo.conversion:
            state.loser_conversions[linfo.conversion] += 1
        w["losers"].add(
            {"winner_uid": uid, "loser_uid": luid, "caption": cap,
             "image": linfo.data, "sha256": hashlib.sha256(linfo.data).hexdigest(),
             "ranking_id": rid, "shard": chunk.shard, "row": row_no}
        )
    return "kept", None, prof, loser_reason
