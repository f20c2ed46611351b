"""The ingest stage: winners (and losers) out of a Pick-a-Pic v2 style source, with accounting.

Streams the source chunk by chunk and writes four parquet tables incrementally:
  winners.parquet     one row per kept winner (image bytes, caption, where it came from)
  losers.parquet      the kept rows' losers, for the Diffusion-DPO baseline (SePPO never reads it)
  quarantine.parquet  every rejected row or shard with its reason and source location
  profile.parquet     one row per source row, no image bytes: what the checks saw, the row's status
Every source row gets exactly one status, so rows_in = kept + ties + excluded + duplicates +
quarantined holds by construction (and is asserted before the outputs are published).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import IngestConfig
from ..io_utils import atomic_dir, write_json
from .checks import ImagePolicy, check_caption, check_labels, inspect_image
from .sources import iter_chunks, load_image_bytes

STATUSES = ("kept", "tie", "excluded", "duplicate", "quarantined")

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
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


def policy_of(cfg: IngestConfig) -> ImagePolicy:
    return ImagePolicy(cfg.min_side, cfg.max_side, tuple(cfg.allowed_formats), tuple(cfg.allowed_modes))


def _field(reason: str) -> str:
    return reason.split(":", 1)[0] if ":" in reason else ""


def _opt_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def _float_or_none(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class _Writer:
    """A parquet table written in pieces (bounded memory), opened on first use."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.schema, self.rows = schema, []
        self._w = pq.ParquetWriter(path, schema)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= 512:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._w.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self._w.close()


def run_ingest(cfg: IngestConfig, out: Path, metrics: Path) -> dict:
    policy = policy_of(cfg)
    counts = Counter({s: 0 for s in STATUSES})
    reasons: Counter = Counter()
    seen: set[tuple[str, str]] = set()  # (caption, sha256) of kept winners
    shards: dict[str, int] = {}
    unreadable: list[str] = []
    losers_kept = 0
    with atomic_dir(out) as tmp:
        w = {
            "winners": _Writer(tmp / "winners.parquet", WINNERS_SCHEMA),
            "losers": _Writer(tmp / "losers.parquet", LOSERS_SCHEMA),
            "quarantine": _Writer(tmp / "quarantine.parquet", QUARANTINE_SCHEMA),
            "profile": _Writer(tmp / "profile.parquet", PROFILE_SCHEMA),
        }
        for chunk in iter_chunks(cfg.source, cfg.source_format, cfg.batch_rows, cfg.split, cfg.revision):
            shards.setdefault(chunk.shard, 0)
            if chunk.table is None:
                unreadable.append(chunk.shard)
                w["quarantine"].add(
                    {"shard": chunk.shard, "row": -1, "table": "shard", "field": "",
                     "reason": chunk.error, "ranking_id": None, "caption": None}
                )
                continue
            shards[chunk.shard] += chunk.table.num_rows
            for i, r in enumerate(chunk.table.to_pylist()):
                row_no = chunk.start_row + i
                status, reason, prof, loser_reason = _one_row(r, chunk, cfg, policy, seen, w, row_no)
                counts[status] += 1
                if status in ("quarantined", "excluded"):
                    reasons[_reason_key(reason)] += 1
                if status == "quarantined":
                    w["quarantine"].add(
                        {"shard": chunk.shard, "row": row_no, "table": "winners",
                         "field": _field(reason), "reason": reason,
                         "ranking_id": _opt_int(r.get("ranking_id")),
                         "caption": r.get("caption") if isinstance(r.get("caption"), str) else None}
                    )
                if status == "kept":
                    if loser_reason is None:
                        losers_kept += 1
                    else:
                        reasons[_reason_key("loser " + loser_reason)] += 1
                        w["quarantine"].add(
                            {"shard": chunk.shard, "row": row_no, "table": "losers",
                             "field": _field(loser_reason), "reason": loser_reason,
                             "ranking_id": _opt_int(r.get("ranking_id")), "caption": r.get("caption")}
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
            "rows_in": rows_in,
            **{k: counts[k] for k in STATUSES},
            "losers_kept": losers_kept,
            "shards": len(shards),
            "unreadable_shards": len(unreadable),
            "quarantined_share": counts["quarantined"] / rows_in if rows_in else 0.0,
            "reasons": dict(sorted(reasons.items())),
        }
        write_json(tmp / "counts.json", summary)
    write_json(metrics, {k: v for k, v in summary.items() if k not in ("reasons", "source")})
    return summary


def _reason_key(reason: str) -> str:
    """Group reasons without their row-specific details (sizes, exception texts)."""
    return reason.split(" (", 1)[0].split(",", 1)[0]


def _one_row(r, chunk, cfg, policy, seen, w, row_no):
    prof = {"ranking_id": _opt_int(r.get("ranking_id")), "label_0": _float_or_none(r.get("label_0")),
            "label_1": _float_or_none(r.get("label_1"))}
    cap = r.get("caption")
    if isinstance(cap, str):
        prof.update(caption_chars=len(cap.strip()), caption_has_nul="\x00" in cap)
    if chunk.missing_columns:
        return "quarantined", f"{chunk.missing_columns[0]}: column missing from shard (missing: " \
            f"{', '.join(chunk.missing_columns)})", prof, None
    if r.get("has_label") is False:
        return "excluded", "has_label: false (unlabelled pair)", prof, None
    reason, l0, l1 = check_labels(r.get("label_0"), r.get("label_1"))
    if reason:
        return "quarantined", reason, prof, None
    if l0 == 0.5:
        return "tie", None, prof, None
    if r.get("are_different") is False:
        return "excluded", "are_different: false (the same image twice)", prof, None
    reason = check_caption(cap, cfg.max_caption_chars)
    if reason:
        return "quarantined", reason, prof, None
    wi = 0 if l0 == 1.0 else 1
    field = f"jpg_{wi}"
    data = load_image_bytes(r.get(field))
    info, reason = inspect_image(data, field, policy)
    prof.update(winner_field=field, winner_uid=r.get(f"image_{wi}_uid"), image_bytes=info.n_bytes,
                image_format=info.format, image_mode=info.mode, width=info.width,
                height=info.height, decodable=info.decodable)
    if reason:
        return "quarantined", reason, prof, None
    sha = hashlib.sha256(data).hexdigest()
    if (cap, sha) in seen:
        return "duplicate", "the same winner image for the same caption was already kept", prof, None
    seen.add((cap, sha))
    uid = r.get(f"image_{wi}_uid") or sha
    w["winners"].add(
        {"winner_uid": uid, "caption": cap, "image": data, "sha256": sha, "width": info.width,
         "height": info.height, "ranking_id": prof["ranking_id"], "source_field": field,
         "shard": chunk.shard, "row": row_no}
    )
    lfield = f"jpg_{1 - wi}"
    ldata = load_image_bytes(r.get(lfield))
    _, loser_reason = inspect_image(ldata, lfield, policy)
    if loser_reason is None:
        w["losers"].add(
            {"winner_uid": uid, "loser_uid": r.get(f"image_{1 - wi}_uid"), "caption": cap,
             "image": ldata, "sha256": hashlib.sha256(ldata).hexdigest(),
             "ranking_id": prof["ranking_id"], "shard": chunk.shard, "row": row_no}
        )
    return "kept", None, prof, loser_reason
