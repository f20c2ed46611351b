"""The "Study" section of reports/report.md: the paper's ablation numbers beside ours, row by row.

The paper's numbers (arXiv 2410.05255, ablation on Pick-a-Pic v2, SD1.5) are PickScore x100 of the
released PickScore on real images: single runs, no interval. Ours are the embedded world's
PickScore x100 (models/pickscore, trained here: a different scorer on a different image space, so
only orderings and differences compare, not levels) and the ground-truth utility in [0, 1], as
mean over training seeds and prompts with two-level 95% CIs. The section is empty (and the report
unchanged) when reports/study/ holds no aggregate.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import Params
from .. import layout as L

PAPER_SCALE = "PickScore x100, Pick-a-Pic v2, SD1.5 (paper, one run)"
# key -> (the paper's row name, its number)
PAPER_ROWS: dict[str, tuple[str, float]] = {
    "seppo": ("SePPO", 21.57),
    "no_anchor": ("w/o anchor", 20.88),
    "first": ("first-checkpoint reference", 21.41),
    "latest": ("latest-checkpoint reference", 21.34),
    "sft": ("SFT", 21.32),
    "indicator": ("indicator", 21.56),
}
OUR_SCALES = {"pickscore_x100": "embedded PickScore x100 (Shapeland)",
              "shapeland_utility": "ground-truth utility [0, 1] (Shapeland)"}


def _cell(t: pd.DataFrame, variant: str, metric: str, K: int) -> str:
    r = t[(t.variant == variant) & (t.metric == metric) & (t["round"] == K)]
    if r.empty:
        return "not run"
    r = r.iloc[0]
    return f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (n={int(r['n_seeds'])})"


def _paper_variants(params: Params, t: pd.DataFrame, K: int) -> dict[str, str]:
    """The paper's row -> the variant that answers it in this study: of the variants with that `paper` key, the one
    with the most seeds in the table (e.g. `sign` at 2e-4 in one study, at its picked lr 5e-5 in another)."""
    out: dict[str, str] = {}
    seeds = t[t["round"] == K].groupby("variant")["n_seeds"].max().to_dict()
    for name, v in params.study.variants.items():
        if v.paper and seeds.get(name, 0) > seeds.get(out.get(v.paper), 0):
            out[v.paper] = name
    for name, v in params.study.variants.items():  # a row nobody ran still names its variant
        if v.paper:
            out.setdefault(v.paper, name)
    return out


def _all_rows(params: Params, t: pd.DataFrame, K: int) -> list[str]:
    """Every multi-seed row of the study on the ground truth (or the first scorer): mean, and the paired
    differences against study.compare_to, with their two-level CIs."""
    from .aggregate import one_seed_points

    metric = "shapeland_utility" if "shapeland_utility" in set(t.metric) else sorted(set(t.metric))[0]
    g = t[(t.metric == metric) & (t["round"] == K) & ~t.variant.isin(one_seed_points(params))]
    refs = [c for c in params.study.compare_to if f"diff_vs_{c}" in g.columns]
    head = ["variant", "n", "lr", "mean [95% CI]", "win rate vs base [95% CI]"] + [f"- {c} [95% CI]" for c in refs]
    md = [f"Every row of this study on {OUR_SCALES.get(metric, metric)}, round {K} (n = training seeds; paired "
          "differences on seed and prompt):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ci(r, a, b):
        return "" if pd.isna(r.get(a, float("nan"))) else f"[{r[a]:.3f}, {r[b]:.3f}]"

    for r in g.to_dict("records"):
        cells = [r["label"], "shared" if r.get("seeds") == "shared" else str(int(r["n_seeds"])),
                 "" if pd.isna(r.get("lr")) else f"{r['lr']:g}",
                 f"{r['mean']:.3f} {ci(r, 'ci_low', 'ci_high')}",
                 "" if pd.isna(r.get("win_rate_vs_base", float("nan"))) else
                 f"{r['win_rate_vs_base']:.3f} {ci(r, 'win_ci_low', 'win_ci_high')}"]
        for c in refs:
            d = r.get(f"diff_vs_{c}")
            cells.append("" if d is None or pd.isna(d) else
                         f"{d:+.3f} {ci(r, f'diff_vs_{c}_ci_low', f'diff_vs_{c}_ci_high')}")
        md.append("| " + " | ".join(cells) + " |")
    return md + [""]


def _probe_lines(root: Path) -> list[str]:
    """`seppo probe` of round 1 (fixed checkpoints, many draws per position), when it was run and committed."""
    import json

    path = root / L.probe_record(1)
    if not path.exists():
        return []
    p = json.loads(path.read_text())
    names = {"anchor_gap_mean": f"the anchor's gap, mean of {p['draws']} draws",
             "anchor_gap_one_draw": "the anchor's gap, one draw (the paper)",
             "implicit_gap_mean": f"the implicit reward D_r - D_w, mean of {p['draws']} draws",
             "winner_utility_only": "-u_winner alone (no model)"}
    md = ["### Probe at fixed checkpoints (`seppo probe`, reports/probe/round_1.json)", "",
          f"Policy `{p['policy']}` vs reference `{p['reference']}` on round 1's {p['positions']} positions, "
          f"{p['draws']} own (noise, t) draws each (seed {p['seed']}); AUC against the oracle label, 95% CI over "
          "positions (bootstrap). No drift and no feedback from the statistic's own flips: this is what the "
          "statistic knows.", "", "| statistic | AUC | 95% CI |", "|---|---|---|"]
    for key, v in p["auc"].items():
        label = names.get(key, key.replace("reward_", "the preference scorer ") + " (reward criterion)")
        md.append(f"| {label} | {v['auc']:.3f} | [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] |")
    return md + [""]


def study_section(params: Params, root: Path = Path(".")) -> list[str]:
    """Markdown lines of the Study section; [] when there is no aggregate under study.out."""
    out = root / params.study.out
    agg = out / "aggregate.csv"
    if not agg.exists() or not any((out / "runs").glob("*.json")):
        return []
    t = pd.read_csv(agg)
    if t.empty:
        return []
    K = int(t["round"].max())
    metrics = [m for m in OUR_SCALES if m in set(t.metric)]
    md = ["## Study (ablation, multi-seed)", "",
          f"`seppo study` ({params.study.out}/aggregate.md has every scorer, paired differences and the "
          f"oracle diagnostics). Ours: round {K}, mean over training seeds and prompts, 95% two-level bootstrap "
          "CI, n = training seeds. The paper's scale and ours differ (other scorer, other images): compare "
          "orderings and differences, not levels.", "",
          "| paper row | " + PAPER_SCALE + " | our variant | "
          + " | ".join(OUR_SCALES[m] for m in metrics) + " |", "|" + "---|" * (3 + len(metrics))]
    by_paper = _paper_variants(params, t, K)
    for key, (row, value) in PAPER_ROWS.items():
        name = by_paper.get(key)
        label = params.study.variants[name].label if name else "(no variant)"
        cells = [_cell(t, name, m, K) if name else "" for m in metrics]
        md.append(f"| {row} | {value:.2f} | {label} | " + " | ".join(cells) + " |")
    md.append("")
    md += _all_rows(params, t, K)
    if (out / "lr_sweep.csv").exists():  # the one-seed lr sweep that picked each method's lr
        from .aggregate import sweep_markdown

        md += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
               for line in sweep_markdown(pd.read_csv(out / "lr_sweep.csv"))]
    if (out / "beta_sweep.csv").exists():  # the one-seed beta calibration
        from .aggregate import beta_markdown

        md += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
               for line in beta_markdown(pd.read_csv(out / "beta_sweep.csv"))]
    if (out / "auc_summary.csv").exists():
        from .aggregate import auc_markdown

        md += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
               for line in auc_markdown(pd.read_csv(out / "auc_summary.csv"))]
    md += _probe_lines(root)
    others = sorted(p.parent for p in (root / L.STUDY).glob("**/aggregate.md") if p.parent != out)
    if others:
        md += ["Other study folders (one per theta_0: runs of another machine type train another base model, so "
               "their rows are not paired with these): "
               + ", ".join(f"`{o.relative_to(root)}/aggregate.md`" for o in others) + ".", ""]
    for m in metrics:
        if (out / f"curves_{m}.png").exists():
            md.append(f"![study_{m}]({(out / f'curves_{m}.png').relative_to(root / 'reports')})")
    return md + [""]
