"""The study's aggregate, recomputed from the per-run records only (reports/study/runs/*.json).

Outputs (under study.out, default reports/study/)
  aggregate.csv     per variant, scorer and round: mean, two-level 95% CI, the prompt-only CI,
                    win rate vs base, paired differences vs each study.compare_to variant
  aggregate.md      the same, final round, as Markdown; then the learning-rate sweep
  lr_sweep.csv      the one-seed learning-rate sweep: per method, lr and round, the sweep seed's mean
                    over prompts, its difference to the method's own lr (paired on prompts) and the
                    lr the sweep picks (best ground truth at the final round)
  oracle.csv        per variant and round: the mean over seeds of every round metric that describes
                    the anchor (flip rates, oracle and anchor diagnostics when the trainer writes them)
  curves_<scorer>.png   per-round means with 95% CI bands, one line per variant
Nothing here reads a clock or a host: the same records give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params
from ..io_utils import atomic_path
from .records import load_records, per_prompt_matrix, stale_records
from .stats import paired_difference, prompt_only_ci, two_level_bootstrap

# round-metric keys that describe the anchor; the oracle ones appear once the trainer writes them
ORACLE_KEYS = ("mean_flip_rate", "mean_implicit_acc", "oracle_flip_rate", "anchor_flip_rate", "anchor_accuracy",
               "anchor_auc", "mean_d_w", "mean_d_r")
FIG_DPI = 100
# the sweep picks by the ground truth where the records have it (the embedded world), else the first scorer
SWEEP_METRICS = ("shapeland_utility", "clip_utility")


def _ckpt(k: int) -> str:
    return "base" if k == 0 else f"round_{k}"


def _by_variant(params: Params, records: list[dict]) -> dict[str, list[dict]]:
    order = list(params.study.variants)
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    return {v: groups[v] for v in sorted(groups, key=lambda v: (order.index(v) if v in order else len(order), v))}


def _n_seeds(params: Params, name: str) -> int:
    return params.study.variants[name].n_seeds or len(params.study.seeds)


def _method_key(v, *, but_beta: bool = False) -> str:
    over = {k: x for k, x in v.overrides.items() if not (but_beta and k == "train.beta")}
    return json.dumps([over, v.lr if but_beta else None], sort_keys=True, default=str)


def _points(params: Params, but_beta: bool) -> dict[str, str]:
    """Sweep point -> its method's main variant: trained variants that share a method key with another. The main
    one is the variant with the most seeds (the first in table order on a tie)."""
    st = params.study
    names = list(st.variants)
    groups: dict[str, list[str]] = {}
    for n, v in st.variants.items():
        if v.train and not v.pending:
            groups.setdefault(_method_key(v, but_beta=but_beta), []).append(n)
    out = {}
    for members in groups.values():
        if but_beta and len({st.variants[n].overrides.get("train.beta", params.train.beta) for n in members}) < 2:
            continue
        main = min(members, key=lambda n: (-_n_seeds(params, n), names.index(n)))
        out.update({n: main for n in members if n != main})
    return out


def beta_points(params: Params) -> dict[str, str]:
    """Beta-sweep point -> its method's main variant: the same overrides and lr as another, only train.beta differs."""
    return _points(params, but_beta=True)


def sweep_points(params: Params) -> dict[str, str]:
    """lr-sweep point -> its method's main variant: the same overrides as another, only the lr differs."""
    return _points(params, but_beta=False)


def _methods(points: dict[str, str]) -> dict[str, list[str]]:
    """Main variant -> [main, its points...] (a sweep's rows, method by method)."""
    methods: dict[str, list[str]] = {}
    for point, main in points.items():
        methods.setdefault(main, [main]).append(point)
    return methods


def _final_round(records: list[dict]) -> int:
    return max(int(k.rsplit("_", 1)[1]) for r in records for k in r["checkpoints"] if k != "base")


def one_seed_points(params: Params) -> set[str]:
    """Sweep points (lr or beta) run on fewer seeds than their method's main variant: they live in the sweep tables
    only (a point run on as many seeds, e.g. the lr the sweep did not pick, keeps its rows in the main table too)."""
    points = sweep_points(params) | beta_points(params)
    return {n for n, main in points.items() if _n_seeds(params, n) < _n_seeds(params, main)}


# per-round keys of the beta table: how saturated the loss is, and what it does to the ground truth
CALIBRATION_KEYS = ("logit_abs_median", "share_saturated", "share_clipped", "grad_norm_median", "mean_implicit_acc",
                    "mean_loss")


def beta_sweep(params: Params, records: list[dict]) -> pd.DataFrame:
    """The one-seed beta calibration: per method (its main variant and its beta points), on the seed they share,
    the loss's saturation over round 1 (median |logit|, share of |logit| > 5, of clipped updates, median gradient
    norm, mean loss), implicit accuracy, and the sweep metric's mean after round 1 and the final round with
    the final round's difference to the method's own beta (paired on prompts); `picked` on the best final round."""
    st = params.study
    points = beta_points(params)
    if not points or not records:
        return pd.DataFrame()
    groups = _by_variant(params, records)
    methods = _methods(points)
    rounds = _final_round(records)
    available = {m for r in records for m in r["checkpoints"].get("round_1", {})}
    metric = next((m for m in SWEEP_METRICS if m in available), sorted(available)[0] if available else None)
    rows = []
    for main, members in methods.items():
        members = [n for n in members if n in groups]
        seeds = [set(r["seed"] for r in groups[n]) for n in members]
        common = sorted(set.intersection(*seeds)) if seeds else []
        if not common or main not in members or len(members) < 2:
            continue
        seed = common[0]
        recs = {n: [r for r in groups[n] if r["seed"] == seed] for n in members}
        ref = per_prompt_matrix(recs[main], _ckpt(rounds), metric)
        for n in sorted(members, key=lambda n: st.variants[n].overrides.get("train.beta", params.train.beta)):
            r0 = recs[n][0]
            rm1 = r0.get("round_metrics", {}).get("1") or {}
            row = {"method": main, "variant": n, "label": st.variants[main].label, "seed": seed, "metric": metric,
                   "beta": float(r0["overrides"].get("train.beta", params.train.beta)),
                   "lr": r0["overrides"].get("train.lr", params.train.lr)}
            row.update({f"r1_{k}": rm1.get(k) for k in CALIBRATION_KEYS})
            for k in (1, rounds):
                got = per_prompt_matrix(recs[n], _ckpt(k), metric)
                row[f"round_{k}"] = None if got is None else float(got[1].mean())
            last = per_prompt_matrix(recs[n], _ckpt(rounds), metric)
            if n != main and last is not None and ref is not None:
                d = paired_difference(last[1], ref[1], st.n_boot, st.seed)
                row.update(diff_vs_main=d.mean, diff_ci_low=d.lo, diff_ci_high=d.hi)
            rows.append(row)
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    t["picked"] = False
    final = f"round_{rounds}"
    for _, g in t.groupby("method", sort=False):
        if g[final].notna().any():
            t.loc[g[final].idxmax(), "picked"] = True
    t["final_round"] = rounds
    return t


def beta_markdown(sweep: pd.DataFrame) -> list[str]:
    if sweep.empty:
        return []
    K = int(sweep["final_round"].iloc[0])
    seed, metric = int(sweep["seed"].iloc[0]), sweep["metric"].iloc[0]
    head = ["method", "lr", "beta", "median abs logit", "saturated (abs logit > 5)", "clipped updates",
            "median grad norm", "implicit acc.", "mean loss", "round 1", f"round {K}", f"round {K} - method's beta",
            "95% CI"]
    md = ["## Beta calibration (one training seed)", "",
          f"Each method at other betas on training seed {seed} only, each at its own lr. Round-1 diagnostics of the "
          "loss -log sigmoid(logit), logit = -0.5 beta (D_w - s D_r) with per-element mean errors, over the round's "
          "960 samples (at its first update the logit is 0 by construction: the policy is the reference): the "
          "median abs(logit), the share of samples with abs(logit) > 5 (saturated: sigmoid within 0.7% of 0 or 1, "
          "a vanishing gradient for the pair ranked right), the share of updates whose gradient norm exceeded the "
          "clip (max_grad_norm 1) and their median norm, implicit accuracy and the mean loss (log 2 = 0.693 at an "
          f"uninformative logit). Then {metric} (mean over prompts) after round 1 and round {K}; differences paired "
          f"on prompts (95% CI over prompts only: one seed). Picked beta (bold): the best round {K}.", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sweep.to_dict("records"):
        d = r.get("diff_vs_main")
        beta = f"{r['beta']:g}"
        cells = [r["label"], f"{r['lr']:g}", f"**{beta}**" if r["picked"] else beta,
                 _f(r.get("r1_logit_abs_median"), 2), _f(r.get("r1_share_saturated")),
                 _f(r.get("r1_share_clipped")), _f(r.get("r1_grad_norm_median"), 1), _f(r.get("r1_mean_implicit_acc")),
                 _f(r.get("r1_mean_loss")),
                 _f(r.get("round_1")), _f(r.get(f"round_{K}")),
                 "(its beta)" if d is None or pd.isna(d) else f"{d:+.3f}",
                 "" if d is None or pd.isna(d) else f"[{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}]"]
        md.append("| " + " | ".join(cells) + " |")
    return md + [""]


# per-round statistics ranked against the oracle label (u_reference > u_winner): which runs log each
AUC_STATS = {
    "loss_draw_auc": "the paper's anchor, one draw (the loss's own), every SePPO run",
    "anchor_auc_k": "the anchor averaged over K own draws (runs with train.anchor_draws >= 2, sign/indicator/soft)",
    "implicit_auc": "the implicit reward D_r - D_w on the loss's draw, every SePPO run",
    "winner_only_auc": "-u_winner alone (no model: how much of the label is the winner's own quality)",
}


def auc_summary(records: list[dict], n_boot: int, seed: int) -> pd.DataFrame:
    """Each oracle AUC over every (run, round) cell that logs it: the mean over cells, with a 95% CI from resampling
    whole runs (a run's rounds share a policy, so they are not independent), and the share of cells whose own
    95% CI (over positions) lies below / above 0.5 where the trainer wrote one."""
    rows = []
    for key, what in AUC_STATS.items():
        per_run, below, above, n_ci = [], 0, 0, 0
        for r in records:
            vals = []
            for m in (r.get("round_metrics") or {}).values():
                multi = (m.get("anchor_draws") or 0) >= 2 and m.get("criterion") in ("sign", "indicator", "soft")
                src = "anchor_auc" if key == "anchor_auc_k" else key
                if m.get(src) is None or (key == "anchor_auc_k" and not multi):
                    continue
                vals.append(float(m[src]))
                ci = m.get(f"{src}_ci95")
                if ci:
                    n_ci += 1
                    below += ci[1] < 0.5
                    above += ci[0] > 0.5
            if vals:
                per_run.append(vals)
        if not per_run:
            continue
        rng = np.random.default_rng(seed)
        means = np.array([np.mean(v) for v in per_run])
        sizes = np.array([len(v) for v in per_run])
        boot = []
        for _ in range(n_boot):
            i = rng.integers(0, len(per_run), len(per_run))
            boot.append(float(np.sum(means[i] * sizes[i]) / np.sum(sizes[i])))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        rows.append({"statistic": key, "what": what, "runs": len(per_run), "cells": int(sizes.sum()),
                     "mean": float(np.sum(means * sizes) / sizes.sum()), "ci_low": float(lo), "ci_high": float(hi),
                     "cells_with_ci": n_ci, "cells_ci_below_half": int(below), "cells_ci_above_half": int(above)})
    return pd.DataFrame(rows)


def auc_markdown(t: pd.DataFrame) -> list[str]:
    if t.empty:
        return []
    md = ["## The anchor against the oracle: AUC over every run and round", "",
          "AUC of each statistic for the oracle label (the reference sample's ground-truth utility beats its "
          "winner's; 0.5 = no information, below 0.5 = ranks the wrong way). Mean over (run, round) cells, 95% CI "
          "resampling whole runs; where the trainer wrote a per-cell CI (over the round's positions), how many "
          "cells' CIs lie entirely below / above 0.5.", "",
          "| statistic | runs | cells | AUC | 95% CI (runs) | cells with CI below 0.5 / above 0.5 |",
          "|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        cis = (f"{r['cells_ci_below_half']} / {r['cells_ci_above_half']} of {r['cells_with_ci']}"
               if r["cells_with_ci"] else "no per-cell CI (a statistic without one, or runs before 2026-12-02)")
        md.append(f"| {r['what']} | {r['runs']} | {r['cells']} | {r['mean']:.3f} | [{r['ci_low']:.3f}, "
                  f"{r['ci_high']:.3f}] | {cis} |")
    return md + [""]


def check_one_base(records: list[dict], where: Path) -> None:
    """Every record of one study must come from the same theta_0 (paired differences assume it): the base model's
    per-prompt scores are identical in every run. A record made on another machine type, whose pretraining drew
    another theta_0, belongs in a study folder of its own (`seppo study --out`)."""
    ref = None
    for r in records:
        base = {m: e.get("per_prompt") for m, e in r["checkpoints"].get("base", {}).items()}
        if ref is None:
            ref = (r, base)
        elif base != ref[1]:
            m0 = ref[0].get("experiment", {}).get("machine", "unrecorded")
            m1 = r.get("experiment", {}).get("machine", "unrecorded")
            raise ValueError(
                f"{where}: {r['variant']}__seed{r['seed']} was evaluated against another base model than "
                f"{ref[0]['variant']}__seed{ref[0]['seed']} (their theta_0 scores differ; machines: {m1!r} vs "
                f"{m0!r}): one study folder holds the runs of one theta_0; run the other with `seppo study --out`")


def lr_sweep(params: Params, records: list[dict]) -> pd.DataFrame:
    """The one-seed learning-rate sweep: per method (main variant plus its sweep points), lr, metric and round,
    the sweep seed's mean over prompts with its prompt-only CI, the difference to the method's own lr paired on
    prompts, and `picked` on the lr with the best mean at the final round (SWEEP_METRICS first)."""
    st = params.study
    points = sweep_points(params)
    if not points:
        return pd.DataFrame()
    groups = _by_variant(params, records)
    methods = _methods(points)
    rounds = _final_round(records)
    rows = []
    for main, members in methods.items():
        seeds = [set(r["seed"] for r in groups.get(n, [])) for n in members]
        common = sorted(set.intersection(*seeds)) if all(seeds) else []
        if len(members) < 2 or not common:
            continue
        seed = common[0]
        recs = {n: [r for r in groups[n] if r["seed"] == seed] for n in members}
        metrics = sorted(recs[main][0]["checkpoints"].get("round_1", {}))
        for metric in metrics:
            ref = {k: per_prompt_matrix(recs[main], _ckpt(k), metric) for k in range(1, rounds + 1)}
            for n in members:
                lr = recs[n][0]["overrides"].get("train.lr", params.train.lr)
                for k in range(1, rounds + 1):
                    got = per_prompt_matrix(recs[n], _ckpt(k), metric)
                    if got is None:
                        continue
                    x = got[1]
                    lo, hi = prompt_only_ci(x, st.n_boot, st.seed)
                    row = {"method": main, "variant": n, "label": st.variants[main].label, "lr": lr, "seed": seed,
                           "metric": metric, "round": k, "mean": float(x.mean()), "prompt_ci_low": lo,
                           "prompt_ci_high": hi}
                    if n != main and ref[k] is not None:
                        d = paired_difference(x, ref[k][1], st.n_boot, st.seed)
                        row.update(diff_vs_main=d.mean, diff_ci_low=d.lo, diff_ci_high=d.hi)
                    rows.append(row)
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    t["picked"] = False
    for (method, metric), g in t[t["round"] == rounds].groupby(["method", "metric"], sort=False):
        t.loc[g["mean"].idxmax(), "picked"] = True
    pick_metric = next((m for m in SWEEP_METRICS if m in set(t.metric)), sorted(set(t.metric))[0])
    t["picks_by"] = pick_metric
    return t


def sweep_markdown(sweep: pd.DataFrame) -> list[str]:
    """Per method and lr: the sweep seed's mean per round of the picking metric; the picked lr in bold."""
    if sweep.empty:
        return []
    metric = sweep["picks_by"].iloc[0]
    s = sweep[sweep.metric == metric]
    K = int(s["round"].max())
    seed = int(s["seed"].iloc[0])
    head = ["method", "lr"] + [f"round {k}" for k in range(1, K + 1)] + [f"round {K} - method's lr", "95% CI"]
    md = ["## Learning-rate sweep (one training seed)", "",
          f"Each method at other learning rates on training seed {seed} only ({metric}, mean over prompts; "
          f"differences paired on prompts, 95% CI over prompts only: one seed, so no seed-to-seed spread). "
          f"The picked lr (bold) has the best mean at round {K}; the multi-seed rows above run at the lr "
          "in their lr column.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, lr), g in s.groupby(["method", "lr"], sort=False):
        g = g.set_index("round")
        picked = bool(g.loc[K, "picked"]) if K in g.index else False
        last = g.loc[K] if K in g.index else None
        d = last.get("diff_vs_main") if last is not None else None
        cells = [g["label"].iloc[0], (f"**{lr:g}**" if picked else f"{lr:g}")]
        cells += [_f(g.loc[k, "mean"]) if k in g.index else "" for k in range(1, K + 1)]
        cells += ["(its lr)" if d is None or pd.isna(d) else f"{d:+.3f}",
                  "" if d is None or pd.isna(d) else f"[{_f(last['diff_ci_low'])}, {_f(last['diff_ci_high'])}]"]
        md.append("| " + " | ".join(cells) + " |")
    return md + [""]


def aggregate(params: Params, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, oracle) DataFrames from the records; deterministic (seeded bootstrap)."""
    st = params.study
    groups = _by_variant(params, records)
    rows, orows = [], []
    if not groups:
        return pd.DataFrame(), pd.DataFrame()
    any_rec = next(iter(groups.values()))[0]
    metrics = st.metrics or sorted(any_rec["checkpoints"].get("base", {}))
    rounds = _final_round(records)
    base_variants = [n for n, v in st.variants.items() if not v.train]
    for metric in metrics:
        # theta_0 is shared by every run: one row (its per-prompt values are identical across runs)
        for name in base_variants:
            got = per_prompt_matrix([any_rec], "base", metric)
            if got is not None:
                e = two_level_bootstrap(got[1], st.n_boot, st.seed)
                plo, phi = prompt_only_ci(got[1], st.n_boot, st.seed)
                rows.append({"variant": name, "label": st.variants[name].label, "metric": metric, "round": 0,
                             "seeds": "shared", "n_seeds": 1, "n_prompts": e.n_prompts, "lr": None,
                             "mean": e.mean, "ci_low": e.lo, "ci_high": e.hi, "prompt_ci_low": plo,
                             "prompt_ci_high": phi})
        for variant, recs in groups.items():
            v = st.variants.get(variant)
            for k in range(1, rounds + 1):
                got = per_prompt_matrix(recs, _ckpt(k), metric)
                if got is None:
                    continue
                seeds, x = got
                e = two_level_bootstrap(x, st.n_boot, st.seed)
                plo, phi = prompt_only_ci(x, st.n_boot, st.seed)
                lr = recs[0]["overrides"].get("train.lr", params.train.lr)
                row = {"variant": variant, "label": v.label if v else recs[0].get("label", variant),
                       "metric": metric, "round": k, "seeds": " ".join(map(str, seeds)), "n_seeds": len(seeds),
                       "n_prompts": e.n_prompts, "lr": lr, "mean": e.mean, "ci_low": e.lo, "ci_high": e.hi,
                       "prompt_ci_low": plo, "prompt_ci_high": phi}
                win = per_prompt_matrix(recs, _ckpt(k), metric, "win_vs_base")
                if win is not None:
                    w = two_level_bootstrap(win[1], st.n_boot, st.seed)
                    row.update(win_rate_vs_base=w.mean, win_ci_low=w.lo, win_ci_high=w.hi)
                for ref in st.compare_to:
                    # a non-trained variant (theta_0) is read from this variant's own records: paired on prompts
                    mine = ref in st.variants and not st.variants[ref].train
                    if ref == variant or (ref not in groups and not mine):
                        continue
                    other = per_prompt_matrix(recs, "base", metric) if mine else \
                        per_prompt_matrix(groups[ref], _ckpt(k), metric)
                    if other is None:
                        continue
                    common = sorted(set(seeds) & set(other[0]))
                    if not common:
                        continue
                    a = x[[seeds.index(s) for s in common]]
                    b = other[1][[other[0].index(s) for s in common]]
                    d = paired_difference(a, b, st.n_boot, st.seed)
                    row.update({f"diff_vs_{ref}": d.mean, f"diff_vs_{ref}_ci_low": d.lo,
                                f"diff_vs_{ref}_ci_high": d.hi, f"diff_vs_{ref}_seeds": len(common)})
                rows.append(row)
    for variant, recs in groups.items():
        for k in range(1, rounds + 1):
            vals: dict[str, list[float]] = {}
            for r in recs:
                for key, val in (r.get("round_metrics", {}).get(str(k)) or {}).items():
                    if (key in ORACLE_KEYS or key.startswith(("oracle_", "anchor_", "d_w", "d_r"))) \
                            and isinstance(val, (int, float)) and not isinstance(val, bool):
                        vals.setdefault(key, []).append(float(val))
            if vals:
                orows.append({"variant": variant, "round": k, "n_seeds": len(recs),
                              **{key: float(np.mean(v)) for key, v in sorted(vals.items())}})
    return pd.DataFrame(rows), pd.DataFrame(orows)


def _f(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def _ci(r, lo: str, hi: str, nd=3) -> str:
    a, b = r.get(lo), r.get(hi)
    return "" if a is None or pd.isna(a) else f"[{_f(a, nd)}, {_f(b, nd)}]"


def table_markdown(params: Params, table: pd.DataFrame) -> list[str]:
    """Final-round rows per scorer (plus theta_0), with CIs and paired differences."""
    if table.empty:
        return []
    st = params.study
    K = int(table["round"].max())
    refs = [c for c in st.compare_to if f"diff_vs_{c}" in table.columns]
    points = one_seed_points(params)  # they have their own table
    md = []
    for metric, g in table.groupby("metric", sort=True):
        g = g[((g["round"] == K) | (g["round"] == 0)) & ~g.variant.isin(points)]
        head = ["variant", "seeds", "lr", "mean", "95% CI (seeds x prompts)", "95% CI (prompts only)",
                "win rate vs base", "95% CI"] + [x for c in refs for x in (f"- {c}", "95% CI")]
        md += [f"**{metric}**, round {K} (round 0 = theta_0):", "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head)]
        for r in g.to_dict("records"):
            cells = [r["label"], f"{r['seeds']}", _f(r.get("lr"), 6) if r.get("lr") else "",
                     _f(r["mean"]), _ci(r, "ci_low", "ci_high"), _ci(r, "prompt_ci_low", "prompt_ci_high"),
                     _f(r.get("win_rate_vs_base")) if not pd.isna(r.get("win_rate_vs_base", np.nan)) else "",
                     _ci(r, "win_ci_low", "win_ci_high")]
            for c in refs:
                d = r.get(f"diff_vs_{c}")
                cells += ["" if d is None or pd.isna(d) else f"{d:+.3f}", _ci(r, f"diff_vs_{c}_ci_low",
                                                                             f"diff_vs_{c}_ci_high")]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    return md


def oracle_markdown(oracle: pd.DataFrame) -> list[str]:
    if oracle.empty:
        return []
    cols = [c for c in oracle.columns if c not in ("variant", "round", "n_seeds")]
    md = ["| variant | round | seeds | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in oracle.to_dict("records"):
        md.append(f"| {r['variant']} | {r['round']} | {r['n_seeds']} | "
                  + " | ".join(_f(r.get(c)) for c in cols) + " |")
    return md + [""]


# the curve figures' panels: a variant goes to the first family whose test it passes
FAMILIES = (("methods: w/o anchor, SFT, Diffusion-DPO, the paper's SePPO",
             lambda v, crit, loss: loss in ("sft", "dpo") or crit == "none" or v.paper in ("seppo", "no_anchor")),
            ("criteria that read the reference sample", lambda v, crit, loss: crit in ("oracle", "oracle_drop",
                                                                                      "reward", "implicit")),
            ("other anchors and reference strategies", lambda v, crit, loss: True))


def _families(params: Params | None, variants: list[str]) -> list[tuple[str, list[str]]]:
    if params is None:
        return [("all variants", variants)]
    groups: dict[str, list[str]] = {title: [] for title, _ in FAMILIES}
    for name in variants:
        v = params.study.variants.get(name)
        over = v.overrides if v else {}
        crit, loss = over.get("train.criterion", params.train.criterion), over.get("train.loss", params.train.loss)
        title = next(t for t, test in FAMILIES if v is None or test(v, crit, loss))
        groups[title].append(name)
    return [(t, names) for t, names in groups.items() if names]


def curves(table: pd.DataFrame, out: Path, skip=(), params: Params | None = None) -> list[Path]:
    """Per-round mean and 95% CI band per variant but ``skip``, one figure per scorer, one panel per family of
    variants (at most a handful of series each), the legend below the data (deterministic bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if table.empty:
        return paths
    colors = plt.get_cmap("tab10")
    for metric, g in table[~table.variant.isin(list(skip))].groupby("metric", sort=True):
        base = g[g["round"] == 0]
        trained = list(dict.fromkeys(g.loc[g["round"] > 0, "variant"]))
        panels = _families(params, trained)
        fig, axes = plt.subplots(1, len(panels), figsize=(max(4.6 * len(panels), 7.0), 5.0), sharey=True, squeeze=False)
        ref = params.study.compare_to[0] if params and params.study.compare_to else None
        for ax, (title, names) in zip(axes[0], panels):
            if ref in trained and ref not in names:  # the comparison every other panel is read against
                h = pd.concat([base[["round", "mean"]], g[g.variant == ref]]).sort_values("round")
                ax.plot(h["round"], h["mean"], ls="--", lw=1.2, color="0.45",
                        label=f"{g[g.variant == ref].label.iloc[0]} (study.compare_to, for reference)")
            for i, variant in enumerate(names):
                h = pd.concat([base[["round", "mean", "ci_low", "ci_high"]], g[g.variant == variant]])
                h = h.sort_values("round")
                label = g[g.variant == variant].label.iloc[0]
                n = int(h["n_seeds"].max()) if "n_seeds" in h else 0
                ax.plot(h["round"], h["mean"], marker="o", ms=3, lw=1.4, color=colors(i % 10),
                        label=f"{label} (n={n})" if n else label)
                ax.fill_between(h["round"], h["ci_low"], h["ci_high"], alpha=0.12, color=colors(i % 10), lw=0)
            ax.set_xticks(sorted(int(r) for r in g["round"].unique()))
            ax.set_xlabel("round (0 = base model)")
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
        axes[0][0].set_ylabel(metric)
        fig.suptitle(f"{metric}: mean over training seeds and prompts, 95% two-level CI bands", fontsize=10)
        fig.tight_layout()
        p = out / f"curves_{metric}.png"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format="png", dpi=FIG_DPI, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)
    return paths


def run_aggregate(params: Params, root: Path = Path("."), title: str = "# Ablation study (`seppo study`)",
                  stale: list[str] | None = None) -> dict:
    """Recompute aggregate.{csv,md}, oracle.csv and the curves from the records under study.out, leaving out the
    stale ones (made with other params than today's plan: default stale_records(params, "study", out)). With no
    current record the files already there are left as they are (the reports then say every run is stale)."""
    out = Path(root) / params.study.out
    if stale is None:
        stale = stale_records(params, "study", out)
    records = load_records(out, stale)
    if not records:
        return {"records": 0, "stale": stale}
    check_one_base(records, out)
    table, oracle = aggregate(params, records)
    with atomic_path(out / "aggregate.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out / "oracle.csv") as tmp:
        oracle.to_csv(tmp, index=False, float_format="%.6f")
    st = params.study
    md = [title, "",
          f"{len(records)} runs; {st.rounds} rounds; training seeds {st.seeds} (train.seed: data order, noise, "
          "timesteps, reference selection; world, base model and evaluation set shared). Mean over seeds and "
          f"prompts; 95% CIs from a two-level bootstrap ({st.n_boot} resamples of the seeds and, crossed with them, "
          "of the prompts every seed was evaluated on); differences paired on seed and prompt.",
          "", "Overrides of every trained variant (the study's cost reductions): "
          + (", ".join(f"`{k}={v}`" for k, v in sorted(st.common.items())) or "none") + ".", ""]
    if st.shared:
        md += ["The shared stages' recipe every run pinned (`study.shared`; the default pipeline's may differ): "
               + ", ".join(f"`{k}={v}`" for k, v in sorted(st.shared.items())) + ".", ""]
    sweep = lr_sweep(params, records)
    if not sweep.empty:
        with atomic_path(out / "lr_sweep.csv") as tmp:
            sweep.to_csv(tmp, index=False, float_format="%.6f")
    else:  # an earlier aggregate's sweep (e.g. its records are stale now) must not outlive it
        (out / "lr_sweep.csv").unlink(missing_ok=True)
    betas = beta_sweep(params, records)
    if not betas.empty:
        with atomic_path(out / "beta_sweep.csv") as tmp:
            betas.to_csv(tmp, index=False, float_format="%.6f")
    else:
        (out / "beta_sweep.csv").unlink(missing_ok=True)
    machines = sorted({str(r.get("experiment", {}).get("machine") or "not recorded") for r in records})
    md += [f"Machine type of the runs: {', '.join(machines)}.", ""]
    if stale:
        md += [f"Left out: {len(stale)} recorded runs made with other params than today's plan (another theta_0 "
               f"or recipe; re-run them to bring them back): {', '.join(stale)}.", ""]
    md += table_markdown(params, table) + sweep_markdown(sweep) + beta_markdown(betas)
    aucs = auc_summary(records, st.n_boot, st.seed)
    if not aucs.empty:
        with atomic_path(out / "auc_summary.csv") as tmp:
            aucs.to_csv(tmp, index=False, float_format="%.6f")
    md += auc_markdown(aucs)
    md += ["## Anchor and oracle diagnostics (mean over seeds)", ""] + oracle_markdown(oracle)
    with atomic_path(out / "aggregate.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    figs = curves(table, out, skip=one_seed_points(params), params=params)
    return {"records": len(records), "rows": len(table), "figures": [str(p.relative_to(root)) for p in figs],
            "stale": stale}
