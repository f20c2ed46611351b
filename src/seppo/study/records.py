"""The study's runs and their per-run records (reports/study/runs/<variant>__seed<k>.json).

A record is small and self-sufficient: the overrides, a hash of the effective params, and for every
checkpoint (base, round_1..K) and scorer the per-prompt means over the evaluation's sampling seeds
and the per-prompt win share against the base model, plus every round's metrics
(reports/metrics/round_k.json, with the oracle keys when the trainer writes them). The two-level
bootstrap resamples exactly these per-prompt values, so the aggregate is recomputable from the
committed records alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Params, apply_overrides, parse_params, variant_params

RECORD_VERSION = 1


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    overrides: dict[str, Any] = field(hash=False)
    params_hash: str
    prefix: str = ""  # "video-" for the video study's runs: their experiments share DVC's namespace with the image's

    @property
    def name(self) -> str:
        """The DVC experiment name and the record's file stem."""
        return f"{self.prefix}{self.variant}__seed{self.seed}"


# sections no stage of an image study run reads: changing them must not re-run the study
NOT_HASHED = {"study", "video_study", "orchestration", "video_world", "video_base", "video_features", "video"}
# a video study run reads the video sections and, through theta_0's image model and train.*, the image ones
VIDEO_NOT_HASHED = {"study", "video_study", "orchestration"}
# per study section: what its hash leaves out and its runs' name prefix
SECTIONS = {"study": (NOT_HASHED, ""), "video_study": (VIDEO_NOT_HASHED, "video-")}


# params added after recorded runs, with the value the code had fixed before they existed: left out of the hash
# at that value (a run with it computed exactly what the recorded runs computed), hashed at any other
LEGACY_VALUES: dict[tuple[str, str], Any] = {
    ("base_model", "unet_attention_heads"): 8,
    ("base_model", "adamw_impl"): "for-loop",
    ("scorer_model", "adamw_impl"): "for-loop",
    # Evidence III's criteria: knobs of criteria that did not exist (no earlier run reads them)
    ("train", "oracle_margin"): 0.0,
    ("train", "reward_scorer"): "pickscore_x100",
    ("train", "reward_margin"): 0.0,
    # Video II: the video base's EMA, Min-SNR weighting and text encoder lr (the video study ran without them)
    ("video_base", "ema_decay"): 0.0,
    ("video_base", "snr_gamma"): 0.0,
    ("video_base", "text_lr"): 0.0,
}


def with_legacy_values(data: dict, current: dict) -> dict:
    """Raw params of an earlier run (e.g. an experiment's params.yaml) with the LEGACY_VALUES knobs it lacks but the
    current raw params set: such a run predates the knob and ran with the value the code fixed, not today's default.
    A knob both lack means today's default on both sides (the same params file, as the study's runs write it)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), legacy in LEGACY_VALUES.items():
        if key in (current.get(section) or {}) and isinstance(out.get(section), dict):
            out[section].setdefault(key, legacy)
    return out


def effective_hash(params: Params, overrides: dict[str, Any], not_hashed: set[str] = NOT_HASHED) -> str:
    """sha256 of every param a run depends on (all sections but ``not_hashed``, overrides applied)."""
    data = apply_overrides(params.model_dump(exclude=not_hashed), overrides)
    eff = parse_params(data).model_dump(exclude=not_hashed)
    for (section, key), legacy in LEGACY_VALUES.items():
        if eff.get(section, {}).get(key, legacy) == legacy:
            eff.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(eff, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_runs(params: Params, section: str = "study") -> list[Run]:
    """Seed by seed, and within a seed the variants in table order; pending and non-training variants
    are not run. Seed-major, so a study stopped early (killed, or out of budget) holds whole seeds
    of every variant: paired comparisons need each variant on the same seeds."""
    st = getattr(params, section)
    not_hashed, prefix = SECTIONS[section]
    runs = []
    for seed in st.seeds:
        for name, v in st.variants.items():
            if v.pending or not v.train or seed not in st.seeds[: v.n_seeds or len(st.seeds)]:
                continue
            over = variant_params(params, v, seed, st.rounds, section)
            runs.append(Run(name, seed, over, effective_hash(params, over, not_hashed), prefix))
    return runs


def record_path(out: Path, run: Run) -> Path:
    return out / "runs" / f"{run.name}.json"


def is_done(out: Path, run: Run) -> bool:
    """A finished run: its record exists and was made with the same effective params."""
    p = record_path(out, run)
    if not p.exists():
        return False
    try:
        return json.loads(p.read_text()).get("params_hash") == run.params_hash
    except json.JSONDecodeError:
        return False


def _r6(x) -> list[float]:
    return [round(float(v), 8) for v in x]


def build_record(run: Run, label: str, scores: pd.DataFrame, round_metrics: dict[int, dict],
                 experiment: dict[str, Any]) -> dict:
    """The per-run record from the evaluate stage's tidy scores (checkpoint, prompt_id, seed, metric, value)."""
    need = {"checkpoint", "prompt_id", "seed", "metric", "value"}
    if not need <= set(scores.columns):
        raise ValueError(f"scores table lacks columns {sorted(need - set(scores.columns))}")
    prompt_ids = sorted(scores.prompt_id.unique().tolist())
    ckpts: dict[str, dict] = {}
    for (ckpt, metric), g in scores.groupby(["checkpoint", "metric"], sort=True):
        wide = g.pivot(index="prompt_id", columns="seed", values="value").reindex(prompt_ids)
        if wide.isna().any().any():
            raise ValueError(f"{run.name}: {ckpt}/{metric} lacks some (prompt, seed) scores")
        entry = {"mean": round(float(wide.to_numpy().mean()), 8), "per_prompt": _r6(wide.mean(axis=1))}
        base = scores[(scores.checkpoint == "base") & (scores.metric == metric)]
        if ckpt != "base" and len(base):
            bw = base.pivot(index="prompt_id", columns="seed", values="value").reindex(prompt_ids)[wide.columns]
            a, b = wide.to_numpy(), bw.to_numpy()
            entry["win_vs_base"] = _r6(((a > b) + 0.5 * (a == b)).mean(axis=1))
        ckpts.setdefault(ckpt, {})[metric] = entry
    return {"version": RECORD_VERSION, "variant": run.variant, "label": label, "seed": run.seed,
            "overrides": run.overrides, "params_hash": run.params_hash, "experiment": experiment,
            "eval_seeds": sorted(int(s) for s in scores.seed.unique()), "prompt_ids": prompt_ids,
            "checkpoints": ckpts, "round_metrics": {str(k): round_metrics[k] for k in sorted(round_metrics)}}


def stale_records(params: Params, section: str, out: Path) -> list[str]:
    """Names of the records under out/runs that today's plan also runs, made with other params than today's (their
    params hash differs: e.g. theta_0's recipe changed since). A study re-run in part holds both kinds; the stale
    ones come from another theta_0, so they are left out of the aggregate rather than paired with the new ones."""
    planned = {r.name: r.params_hash for r in plan_runs(params, section)}
    names = []
    for p in sorted((out / "runs").glob("*.json")):
        try:
            h = json.loads(p.read_text()).get("params_hash")
        except json.JSONDecodeError:
            continue  # load_records names the file
        if p.stem in planned and h != planned[p.stem]:
            names.append(p.stem)
    return names


def load_records(out: Path, leave_out: Iterable[str] = ()) -> list[dict]:
    """Every record under out/runs but those named in leave_out, sorted by file name; a malformed one fails with
    its path."""
    recs, skip = [], set(leave_out)
    for p in sorted((out / "runs").glob("*.json")):
        if p.stem in skip:
            continue
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{p}: not valid JSON ({err})") from None
        for key in ("variant", "seed", "prompt_ids", "checkpoints"):
            if key not in r:
                raise ValueError(f"{p}: record lacks '{key}'")
        recs.append(r)
    return recs


def per_prompt_matrix(records: list[dict], checkpoint: str, metric: str, key: str = "per_prompt"
                      ) -> tuple[list[int], np.ndarray] | None:
    """(seeds, x[seed, prompt]) of one variant's records at one checkpoint; None if absent anywhere."""
    rows, seeds = [], []
    ids = records[0]["prompt_ids"] if records else []
    for r in sorted(records, key=lambda r: r["seed"]):
        e = r["checkpoints"].get(checkpoint, {}).get(metric)
        if e is None or key not in e:
            return None
        if r["prompt_ids"] != ids:
            raise ValueError(f"{r['variant']} seed {r['seed']}: prompts differ from the other runs")
        rows.append(e[key])
        seeds.append(r["seed"])
    return (seeds, np.asarray(rows, dtype=float)) if rows else None
