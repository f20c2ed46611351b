"""The validate stage: a Great Expectations 1.x suite over the ingest's row profile.

The suite states the ingest rules declaratively (schema, non-empty captions, labels in range, unique
ids, decodable images, size and mode within bounds, caption length). It runs as a GX Checkpoint
twice: on the KEPT rows, where every expectation must hold (a failure means a bug in the
quarantine), and on ALL labelled non-tie rows, where the unexpected counts document what the
quarantine removed. Data Docs of both go under ``reports/data_docs``, with their CSS/JS pointed at
local copies (``seppo.webassets``) so they render offline. The stage fails with a clear message
when the quarantined share or the unreadable shards exceed the params thresholds, or when fewer
than `ingest.min_winners` winners were kept.
"""

from __future__ import annotations

import datetime

import json
import re
from pathlib import Path

import pandas as pd

from ..config import IngestConfig
from ..io_utils import atomic_dir, write_json
from ..webassets.offline import make_offline
from .ingest import PROFILE_SCHEMA


class DataQualityError(RuntimeError):
    """The source is too broken to train on; the message says what and where to look."""


def build_suite(gx, cfg: IngestConfig):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="winners_profile")
    for exp in (
        E.ExpectTableColumnsToMatchSet(column_set=list(PROFILE_SCHEMA.names), exact_match=True),
        E.ExpectColumnValuesToNotBeNull(column="caption_chars"),
        E.ExpectColumnValuesToBeBetween(
            column="caption_chars", min_value=1, max_value=cfg.max_caption_chars
        ),
        E.ExpectColumnValuesToBeInSet(column="caption_has_nul", value_set=[False]),
        E.ExpectColumnValuesToBeInSet(column="label_0", value_set=[0.0, 1.0]),
        E.ExpectColumnValuesToBeInSet(column="label_1", value_set=[0.0, 1.0]),
        E.ExpectColumnValuesToNotBeNull(column="winner_uid"),
        E.ExpectColumnValuesToBeUnique(column="winner_uid"),
        E.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=cfg.min_side, max_value=cfg.max_side),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_side, max_value=cfg.max_side),
        E.ExpectColumnValuesToBeInSet(column="image_mode", value_set=list(cfg.allowed_modes)),
        E.ExpectColumnValuesToBeInSet(column="image_format", value_set=list(cfg.allowed_formats)),
    ):
        suite.add_expectation(exp)
    return suite


def _summarise(result) -> dict:
    out = {"success": bool(result.success), "expectations": []}
    for r in result.results:
        cfg = r.expectation_config
        out["expectations"].append(
            {
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "success": bool(r.success),
                "unexpected_count": int(r.result.get("unexpected_count") or 0),
                "element_count": int(r.result.get("element_count") or 0),
            }
        )
    out["expectations"].sort(key=lambda e: (e["expectation"], e["column"] or ""))
    return out


RUN_LABELS = {"kept": "kept-rows-must-pass", "all_rows": "all-labelled-rows"}
FIXED_RUN_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CLOCK = re.compile(r"\b20\d{6}T\d{6}\.\d{6}Z\b")


def _reproducible_pages(root: Path) -> int:
    """GX writes a random uuid into each collapsible block's id and the load time of each batch: number the
    uuids in order of appearance per page and write the fixed run time instead of the clock, so the same
    profile gives the same Data Docs bytes."""
    fixed = FIXED_RUN_TIME.strftime("%Y%m%dT%H%M%S.%fZ")
    changed = 0
    for page in sorted(root.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        ids: dict[str, str] = {}
        new = _UUID.sub(lambda m: ids.setdefault(m.group(0), f"block-{len(ids) + 1}"), text)
        new = _CLOCK.sub(fixed, new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def validate_profile(profile: pd.DataFrame, cfg: IngestConfig, docs_dir: Path | None) -> dict:
    """Run the suite as a Checkpoint on kept rows and on all labelled non-tie rows."""
    import great_expectations as gx  # slow import: only when the stage runs
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="ephemeral")
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="seppo",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
            },
        )
    suite = context.suites.add(build_suite(gx, cfg))
    asset = context.data_sources.add_pandas("ingest").add_dataframe_asset("profile")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    results = {}
    frames = {
        "kept": profile[profile.status == "kept"],
        "all_rows": profile[profile.status.isin(["kept", "duplicate", "quarantined"])],
    }
    for name, frame in frames.items():
        vd = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"profile_{name}", data=batch_def, suite=suite)
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir is not None else []
        cp = context.checkpoints.add(
            gx.Checkpoint(name=f"ingest_{name}", validation_definitions=[vd], actions=actions,
                          result_format={"result_format": "SUMMARY"})
        )
        # a labelled run at a fixed time: the two runs are told apart in the Data Docs index, and the pages
        # carry no clock (the stage's outputs are a function of its inputs)
        run_id = RunIdentifier(run_name=RUN_LABELS[name], run_time=FIXED_RUN_TIME)
        run = cp.run(batch_parameters={"dataframe": frame.reset_index(drop=True)}, run_id=run_id)
        results[name] = _summarise(next(iter(run.run_results.values())))
    return results


def _read_ingest(ingest_dir: Path) -> tuple[dict, pd.DataFrame]:
    missing = [n for n in ("counts.json", "profile.parquet") if not (ingest_dir / n).is_file()]
    if missing:
        raise DataQualityError(
            f"validate: no ingest output in {ingest_dir} (missing {', '.join(missing)}); run "
            "`seppo ingest` (or `dvc repro ingest`) first."
        )
    return json.loads((ingest_dir / "counts.json").read_text()), pd.read_parquet(ingest_dir / "profile.parquet")


def run_validate(cfg: IngestConfig, ingest_dir: Path, docs: Path, out_json: Path, metrics: Path) -> dict:
    counts, profile = _read_ingest(ingest_dir)
    with atomic_dir(docs) as tmp:
        results = validate_profile(profile, cfg, tmp)
        # Data Docs load their CSS/JS from CDNs and stay blank offline: point them at local copies
        make_offline(tmp)
        _reproducible_pages(tmp)
    write_json(out_json, results)
    share = counts["quarantined_share"]
    summary = {
        "kept_rows_pass": results["kept"]["success"],
        "expectations": len(results["kept"]["expectations"]),
        "all_rows_unexpected": sum(e["unexpected_count"] for e in results["all_rows"]["expectations"]),
        "quarantined_share": share,
        "unreadable_shards": counts["unreadable_shards"],
        "lost": counts.get("lost", 0),
        "winners": counts["kept"],
    }
    write_json(metrics, summary)
    problems = []
    if not results["kept"]["success"]:
        bad = [f"{e['expectation']}({e['column']}): {e['unexpected_count']} rows"
               for e in results["kept"]["expectations"] if not e["success"]]
        problems.append("kept winners fail expectations (an ingest bug): " + "; ".join(bad))
    if counts["kept"] < cfg.min_winners:
        problems.append(
            f"{counts['kept']} winners kept of {counts['rows_in']} rows in (ties {counts['tie']}, excluded "
            f"{counts['excluded']}, duplicates {counts['duplicate']}, quarantined {counts['quarantined']}, "
            f"lost {counts.get('lost', 0)}), fewer than ingest.min_winners={cfg.min_winners}"
        )
    if share > cfg.max_quarantine_share:
        # counts["reasons"] holds the quarantined rows' reasons only (exclusions are counted apart)
        top = sorted(counts["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        problems.append(
            f"{counts['quarantined']} of {counts['rows_in']} rows quarantined ({share:.1%}), above "
            f"ingest.max_quarantine_share={cfg.max_quarantine_share:g}; top reasons: {top}; "
            f"see {ingest_dir / 'quarantine.parquet'}"
        )
    if counts["unreadable_shards"] > cfg.max_unreadable_shards:
        problems.append(
            f"{counts['unreadable_shards']} unreadable shard(s) ({counts.get('lost', 0)} rows lost inside "
            f"them), above ingest.max_unreadable_shards="
            f"{cfg.max_unreadable_shards}; see rows with table='shard' in {ingest_dir / 'quarantine.parquet'}"
        )
    if problems:
        raise DataQualityError("validate: " + " | ".join(problems))
    return summary
