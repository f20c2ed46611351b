"""The report stage: Markdown + self-contained HTML, regenerated from tracked outputs only.

Inputs: reports/metrics/*.json, reports/eval/{summary.csv, grid.png}, reports/base_model/grid.png,
runs/round_k/live/plots/metrics/train/*.tsv and the params. No clock, no host name, no random
draw: the same inputs give the same bytes (a test checks it).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from ..config import Params
from ..io_utils import atomic_path

FIG_DPI = 100


def _read_json(p: Path) -> dict:
    return json.loads(p.read_text()) if p.exists() else {}


def _fig_save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIG_DPI, metadata={"Software": None})


def _round_curves(summary: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, g in summary.groupby("metric", sort=True):
        g = g.sort_values("round")
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        ax.plot(g["round"], g["mean"], marker="o", color="#1f5fa8")
        ax.fill_between(g["round"], g["ci_low"], g["ci_high"], alpha=0.25, color="#1f5fa8", label="95% CI")
        ax.set_xlabel("round (0 = base model)")
        ax.set_ylabel(metric)
        ax.set_xticks(list(g["round"]))
        ax.legend(fontsize=7)
        ax.set_title(f"{metric} per round", fontsize=9)
        fig.tight_layout()
        p = out / f"rounds_{metric}.png"
        _fig_save(fig, p)
        plt.close(fig)
        paths.append(p)
    return paths


def _train_curves(live_dirs: list[Path], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key in ("loss", "flip_rate", "implicit_acc"):
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        offset, any_data = 0, False
        for k, d in enumerate(live_dirs, start=1):
            tsv = d / "plots" / "metrics" / "train" / f"{key}.tsv"
            if not tsv.exists():
                continue
            t = pd.read_csv(tsv, sep="\t")
            ax.plot(t["step"] + offset, t[key], lw=0.8, label=f"round {k}")
            offset += len(t)
            any_data = True
        if any_data:
            ax.set_xlabel("optimizer update (all rounds)")
            ax.set_ylabel(key)
            ax.legend(fontsize=7)
            ax.set_title(f"training {key}", fontsize=9)
            fig.tight_layout()
            p = out / f"train_{key}.png"
            _fig_save(fig, p)
            paths.append(p)
        plt.close(fig)
    return paths


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and pd.isna(x)) else f"{x:.{nd}f}"


def _scorer_section(params: Params, sm: dict) -> list[str]:
    """Which weights each scorer used, and how well the in-project PickScore agrees with the truth."""
    from ..evaluation.scorers.base import WEIGHT_KEYS

    models = params.evaluate.models.model_dump()
    md = ["## Scorers", ""]
    for name in params.evaluate.scorers:
        key = WEIGHT_KEYS.get(name, [None])[0]
        src = f"`{models[key]}` (evaluate.models.{key})" if key else "pixels, no weights (never used by training)"
        md.append(f"- `{name}`: {src}")
    md.append("")
    held = sm.get("held_out") if sm else None
    if held:
        arch = sm.get("architecture", {})
        md += [f"In-project PickScore (`seppo scorer-model`, a {arch.get('parameters', 0) / 1e6:.1f} M-parameter "
               f"CLIP, ViT patch {arch.get('patch_size')} on {arch.get('image_size')} px): agreement on "
               f"{sm.get('pairs_held_out')} held-out pairs (captions never seen in preference training; pairs "
               f"whose ground-truth utilities differ by < {held.get('truth_margin')} left out).", "",
               "| ranker | vs annotator label | vs ground-truth u (pixels) | vs simulation's true utility |",
               "|---|---|---|---|"]
        rows = [("PickScore (contrastive + preference)", "pickscore"), ("CLIP (contrastive only)", "contrastive_only"),
                ("ground-truth u", "u"), ("annotator label", "label")]
        for title, key in rows:
            cells = []
            for col in ("label", "u", "true_utility"):
                v = held.get(f"{key}_vs_{col}")
                cells.append(f"{v['agreement']:.3f} (n={v['pairs']})" if v and v.get("agreement") is not None else "")
            md.append(f"| {title} | " + " | ".join(cells) + " |")
        md.append("")
    return md


def build_report(params: Params, root: Path = Path(".")) -> tuple[str, str]:
    rep = root / "reports"
    figs = rep / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    K = params.train.rounds
    m = {n: _read_json(rep / "metrics" / f"{n}.json") for n in ("world", "ingest", "validate", "cache", "eval",
                                                           "scorer_model")}
    rounds = [_read_json(rep / "metrics" / f"round_{k}.json") for k in range(1, K + 1)]
    summary = pd.read_csv(rep / "eval" / "summary.csv") if (rep / "eval" / "summary.csv").exists() else pd.DataFrame()
    images: list[tuple[str, Path]] = []
    curve_paths = _round_curves(summary, figs) if len(summary) else []
    train_paths = _train_curves([root / f"runs/round_{k}/live" for k in range(1, K + 1)], figs)
    for p in (rep / "eval" / "grid.png", rep / "base_model" / "grid.png"):
        if p.exists():
            images.append((p.parent.name + " grid", p))

    ev = m["eval"].get("settings", {})
    tr = params.train
    md = ["# SePPO run report", "",
          "Regenerated by `seppo report` from tracked outputs only (metrics JSON, evaluation tables, "
          "DVCLive logs, params).", "",
          "## Settings", "",
          f"- training: loss `{tr.loss}`, {K} rounds x {tr.updates_per_round} updates, micro-batch "
          f"{tr.micro_batch} x accumulation {tr.grad_accum}, lr {tr.lr:g}, beta {tr.beta:g} "
          f"(logit = -0.5 beta (D_w - s D_r), per-element mean errors), strategy `{tr.strategy}`, "
          f"criterion `{tr.criterion}`, seed {tr.seed}",
          f"- reference samples: `{tr.ref_samples}`, {tr.ref_sampling.sampler} {tr.ref_sampling.steps} steps, "
          f"guidance {tr.ref_sampling.guidance:g}",
          f"- evaluation: prompts `{ev.get('prompts')}` ({ev.get('n_prompts')} prompts), seeds {ev.get('seeds')}, "
          f"{ev.get('sampler')} {ev.get('steps')} steps, guidance {ev.get('guidance')}, "
          f"{ev.get('ci', '')} ({ev.get('n_boot')} resamples)",
          f"- base model: `{params.base_model.source}` (revision {params.base_model.revision})", "",
          "## Data", ""]
    ing = m["ingest"]
    if ing:
        # rows in = kept + ties + excluded + duplicates + quarantined + lost (rows of unreadable row groups)
        md += ["| rows in | kept | ties | excluded | duplicates | quarantined | lost | losers kept | unreadable shards |",
               "|---|---|---|---|---|---|---|---|---|",
               f"| {ing.get('rows_in')} | {ing.get('kept')} | {ing.get('tie')} | {ing.get('excluded')} | "
               f"{ing.get('duplicate')} | {ing.get('quarantined')} | {ing.get('lost', 0)} | {ing.get('losers_kept')} | "
               f"{ing.get('unreadable_shards')} |", ""]
        if ing.get("conversions"):
            md += ["Winners converted to RGB: " + ", ".join(f"{k} {v}" for k, v in ing["conversions"].items())
                   + ".", ""]
    val = m["validate"]
    if val:
        md += [f"Great Expectations suite: {val.get('expectations')} expectations, kept rows pass: "
               f"{val.get('kept_rows_pass')} (Data Docs: `reports/data_docs/index.html`).", ""]
    md += ["## Metrics (mean over prompts and seeds, 95% bootstrap CI; win rate vs the base model)", ""]
    if len(summary):
        md += ["| checkpoint | metric | mean | 95% CI | win rate vs base | 95% CI |", "|---|---|---|---|---|---|"]
        for r in summary.sort_values(["metric", "round"]).itertuples():
            win = getattr(r, "win_rate_vs_base", None)
            md.append(f"| {r.checkpoint} | {r.metric} | {_fmt(r.mean)} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
                      f"{_fmt(win)} | [{_fmt(getattr(r, 'win_ci_low', None))}, {_fmt(getattr(r, 'win_ci_high', None))}] |")
        md.append("")
    md += _scorer_section(params, m["scorer_model"])
    if any(rounds):
        md += ["## Training rounds", "",
               "| round | reference | mean loss | flip rate | implicit acc | samples/s | peak RSS (MB) |",
               "|---|---|---|---|---|---|---|"]
        for r in rounds:
            if r:
                md.append(f"| {r['round']} | `{r['reference']}` | {_fmt(r.get('mean_loss'), 4)} | "
                          f"{_fmt(r.get('mean_flip_rate'))} | {_fmt(r.get('mean_implicit_acc'))} | "
                          f"{_fmt(r.get('mean_samples_per_s'), 1)} | {_fmt(r.get('peak_rss_mb'), 0)} |")
        md.append("")
    md += ["## Figures", ""]
    for p in curve_paths + train_paths:
        md.append(f"![{p.stem}](figures/{p.name})")
    for title, p in images:
        md.append(f"![{title}]({p.relative_to(rep)})")
    md_text = "\n".join(md) + "\n"

    body = []
    for line in md:
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("![") and "](" in line:
            rel = line[line.index("](") + 2 : -1]
            data = base64.b64encode((rep / rel).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(rel)}" src="data:image/png;base64,{data}">')
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        elif line.startswith("- "):
            body.append(f"<p>&bull; {html.escape(line[2:])}</p>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    joined, out, in_table = body, [], False
    for b in joined:  # wrap consecutive rows in tables
        if b.startswith("<tr>") and not in_table:
            out.append("<table>")
            in_table = True
        if not b.startswith("<tr>") and in_table:
            out.append("</table>")
            in_table = False
        out.append(b)
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
             "img{max-width:100%;margin:6px 0;display:block}")
    html_text = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>SePPO run report</title>"
                 f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
    return md_text, html_text


def run_report(params: Params, root: Path = Path(".")) -> dict:
    md, page = build_report(params, root)
    with atomic_path(root / "reports" / "report.md") as tmp:
        tmp.write_text(md)
    with atomic_path(root / "reports" / "report.html") as tmp:
        tmp.write_text(page)
    return {"report_md": "reports/report.md", "report_html": "reports/report.html", "bytes_html": len(page)}
