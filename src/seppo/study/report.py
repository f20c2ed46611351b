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
    by_paper = {v.paper: name for name, v in params.study.variants.items() if v.paper}
    for key, (row, value) in PAPER_ROWS.items():
        name = by_paper.get(key)
        label = params.study.variants[name].label if name else "(no variant)"
        cells = [_cell(t, name, m, K) if name else "" for m in metrics]
        md.append(f"| {row} | {value:.2f} | {label} | " + " | ".join(cells) + " |")
    md.append("")
    if (out / "lr_sweep.csv").exists():  # the one-seed lr sweep that picked each method's lr
        from .aggregate import sweep_markdown

        md += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
               for line in sweep_markdown(pd.read_csv(out / "lr_sweep.csv"))]
    for m in metrics:
        if (out / f"curves_{m}.png").exists():
            md.append(f"![study_{m}]({(out / f'curves_{m}.png').relative_to(root / 'reports')})")
    return md + [""]
