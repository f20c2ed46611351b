"""The report stage: Markdown + self-contained HTML, regenerated from tracked outputs only.

Inputs: reports/metrics/*.json, reports/eval/{summary.csv, grid.png}, reports/base_model/grid.png,
runs/round_k/live/plots/metrics/train/*.tsv, the params, and reports/study/ when a study has run. No clock, no host name, no random
draw: the same inputs give the same bytes (a test checks it).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from ..config import Params
from ..io_utils import atomic_path
from .. import layout as L
from ..layout import Layout

FIG_DPI = 100


def _read_json(p: Path) -> dict:
    return json.loads(p.read_text()) if p.exists() else {}


def _fig_save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIG_DPI, metadata={"Software": None})


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _round_curves(summary: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per scorer (each on its own scale): mean per checkpoint with its 95% CI band."""
    plt = _plt()
    paths = []
    for metric, g in summary.groupby("metric", sort=True):
        g = g.sort_values("round")
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        ax.plot(g["round"], g["mean"], marker="o", color="#1f5fa8", label="mean")
        ax.fill_between(g["round"], g["ci_low"], g["ci_high"], alpha=0.25, color="#1f5fa8", label="95% CI")
        ax.set_xlabel("checkpoint")
        ax.set_ylabel(metric)
        ax.set_xticks(list(g["round"]), list(g["checkpoint"]))
        ax.legend(fontsize=8)
        ax.set_title(f"{metric} per checkpoint", fontsize=10)
        fig.tight_layout()
        p = out / f"rounds_{metric}.png"
        _fig_save(fig, p)
        plt.close(fig)
        paths.append(p)
    return paths


# Training series overlaid across rounds (one figure per series), when DVCLive logged them.
TRAIN_SERIES = ("loss", "implicit_acc", "flip_rate", "oracle_flip_rate", "anchor_accuracy", "d_w", "d_r")
FLIP_SERIES = ("flip_rate", "oracle_flip_rate")


def _train_curves(live_dirs: list[Path], out: Path, criterion: str) -> list[tuple[Path | None, str]]:
    """(figure, caption) per training series: x = optimizer update within the round, one line per round.

    A flip-rate series that is zero at every update is not drawn (figure None): its caption says that no
    reference sample was flipped, and why for criterion none.
    """
    plt = _plt()
    figs = []
    for key in TRAIN_SERIES:
        series = []
        for k, d in enumerate(live_dirs, start=1):
            tsv = d / "plots" / "metrics" / "train" / f"{key}.tsv"
            if tsv.exists():
                series.append((k, pd.read_csv(tsv, sep="\t")))
        if not series:
            continue
        never = key in FLIP_SERIES and all((t[key] == 0).all() for _, t in series)
        if never:  # a sentence, not an empty panel
            why = ("criterion `none` learns every reference sample as a loser"
                   if criterion == "none" else f"criterion `{criterion}` flipped no reference sample")
            figs.append((None, f"`{key}` is 0 at every update of {_plural(len(series), 'round')} ({why}): "
                               "no figure."))
            continue
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        for k, t in series:
            ax.plot(t["step"], t[key], lw=1.0, label=f"round {k}")
        ax.set_xlabel("optimizer update within the round")
        ax.set_ylabel(key)
        ax.legend(fontsize=8)
        ax.set_title(f"training {key}", fontsize=10)
        fig.tight_layout()
        p = out / f"train_{key}.png"
        _fig_save(fig, p)
        plt.close(fig)
        figs.append((p, f"training `{key}` per update, rounds overlaid."))
    return figs


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and pd.isna(x)) else f"{x:.{nd}f}"


def _scorer_section(params: Params, sm: dict) -> list[str]:
    """Which weights each scorer used, and how well the in-project PickScore agrees with the truth."""
    from ..evaluation.scorers import weight_keys

    models = params.evaluate.models.model_dump()
    md = ["## Scorers", ""]
    for name in params.evaluate.scorers:
        key = (weight_keys(name) or [None])[0]
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
    figs = root / L.REPORT_FIGURES
    figs.mkdir(parents=True, exist_ok=True)
    for old in figs.glob("*.png"):  # the stage's own folder: a figure no longer drawn must not linger
        old.unlink()
    K = params.train.rounds
    m = {n: _read_json(root / L.metrics(n)) for n in ("world", "ingest", "validate", "cache", "eval", "scorer_model")}
    rounds = [_read_json(Layout(root).metrics(k)) for k in range(1, K + 1)]
    summary = pd.read_csv(root / L.EVAL_SUMMARY) if (root / L.EVAL_SUMMARY).exists() else pd.DataFrame()
    curve_paths = _round_curves(summary, figs) if len(summary) else []
    train_figs = _train_curves([Layout(root).live(k) for k in range(1, K + 1)], figs,
                               params.train.criterion)

    ev = m["eval"].get("settings", {})
    tr = params.train
    md = ["# SePPO run report", "",
          "Regenerated by `seppo report` from tracked outputs only (metrics JSON, evaluation tables, "
          "DVCLive logs, params).", "",
          "## Settings", "",
          f"- training: loss `{tr.loss}`, {_plural(K, 'round')} x {tr.updates_per_round} updates, micro-batch "
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
    md += ["## Metrics (mean over prompts and seeds, 95% bootstrap CI over prompts; paired vs the base model)", ""]
    md += metrics_table(params, summary, root / L.EVAL_SCORES)
    md += _scorer_section(params, m["scorer_model"])
    if any(rounds):
        md += ["## Training rounds", "",
               "| round | loss | criterion | anchor draws | reference | mean loss | flip rate | implicit acc |",
               "|---|---|---|---|---|---|---|---|"]
        for r in rounds:
            if r:
                md.append(f"| {r['round']} | {r.get('loss_type')} | {r.get('criterion') or '-'} | "
                          f"{r.get('anchor_draws', 0)} | `{r['reference']}` | {_fmt(r.get('mean_loss'), 4)} | "
                          f"{_fmt(r.get('mean_flip_rate'))} | {_fmt(r.get('mean_implicit_acc'))} |")
        md += ["", "Wall-clock throughput and peak memory of each round are in `reports/metrics/timing/round_k.json` "
               "(`dvc metrics show`): they vary between runs, so nothing, this report included, depends on them.", ""]
        md += _anchor_section(rounds)
    from ..study.report import study_section

    md += study_section(params, root)  # only when reports/study/ holds runs: otherwise the report is unchanged
    md += ["## Evaluation curves", "",
           "One figure per scorer, each on its own scale: mean over prompts and seeds per checkpoint, "
           "with its 95% bootstrap CI band.", ""]
    for p in curve_paths:
        md += [f"![{p.stem}](figures/{p.name})", ""]
    if train_figs:
        md += ["## Training curves", "", "One figure per logged series; the rounds are overlaid.", ""]
        for p, caption in train_figs:
            md += ([f"![{p.stem}](figures/{p.name})", ""] if p else []) + [f"*{caption}*", ""]
    grids = [("Evaluation images: base model vs each round", root / L.EVAL / "grid.png",
              "The same held-out prompts (columns) and seed for every checkpoint (rows); the number under "
              "each image is its score by the first scorer of `evaluate.scorers`."),
             ("Base model samples (`base_samples` stage)", root / L.BASE_SAMPLES / "grid.png",
              "theta_0 on held-out prompts (columns); the number under each image is its ground-truth utility.")]
    for title, p, caption in grids:
        if p.exists():
            md += [f"## {title}", "", f"![{title}]({p.relative_to(rep).as_posix()})", "", f"*{caption}*", ""]
    md += _provenance(params, root)
    md_text = "\n".join(md).rstrip("\n") + "\n"
    return md_text, markdown_to_html(md_text, rep)


def metrics_table(params: Params, summary: pd.DataFrame, scores_path: Path) -> list[str]:
    """Each checkpoint's mean per scorer, its paired difference and win rate vs the base, with prompt CIs."""
    if not len(summary):
        return []
    diffs = _diff_vs_base(scores_path, params.evaluate.n_boot, params.evaluate.seed)
    md = ["| checkpoint | metric | mean | 95% CI | difference vs base | 95% CI | win rate vs base | 95% CI |",
          "|---|---|---|---|---|---|---|---|"]
    for r in summary.sort_values(["metric", "round"]).itertuples():
        if r.round == 0:  # the base itself: nothing to pair with
            md.append(f"| {r.checkpoint} | {r.metric} | {_fmt(r.mean)} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
                      "(the base) | | (the base) | |")
            continue
        d = diffs.get((r.checkpoint, r.metric))
        dcell = f"{d[0]:+.3f} | [{d[1]:+.3f}, {d[2]:+.3f}]" if d else "n/a | "
        md.append(f"| {r.checkpoint} | {r.metric} | {_fmt(r.mean)} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
                  f"{dcell} | {_fmt(r.win_rate_vs_base)} | [{_fmt(r.win_ci_low)}, {_fmt(r.win_ci_high)}] |")
    return md + ["", "Difference: mean over prompts of the per-(prompt, seed) score minus the base's on the same "
                 "prompt and seed, in the metric's own units; win rate: share of those pairs the checkpoint wins (ties "
                 f"half). CIs: {params.evaluate.n_boot} bootstrap resamples of prompts (seed {params.evaluate.seed}). "
                 "One training run: these intervals are over prompts only, not over training seeds.", ""]


def _diff_vs_base(scores_path: Path, n_boot: int, seed: int) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(checkpoint, metric) -> (mean, lo, hi) of the paired difference vs the base, bootstrapped over prompts."""
    from ..evaluation.stats import bootstrap_mean

    if not scores_path.exists():
        return {}
    scores = pd.read_parquet(scores_path)
    out = {}
    for metric, g in scores.groupby("metric", sort=True):
        wide = {c: t.pivot(index="prompt_id", columns="seed", values="value").sort_index()
                for c, t in g.groupby("checkpoint", sort=True)}
        base = g.loc[g["round"] == 0, "checkpoint"].iloc[0]
        for name, w in wide.items():
            if name != base:
                w = w.loc[wide[base].index, wide[base].columns]
                out[(name, metric)] = bootstrap_mean(w.to_numpy(float) - wide[base].to_numpy(float), n_boot, seed)
    return out


# the files whose content the report's numbers come from (md5 below: which outputs this report describes)
PROVENANCE_FILES = (L.EVAL_SUMMARY, L.EVAL_SCORES, L.metrics("eval"), L.metrics("world"), L.metrics("scorer_model"))


def _provenance(params: Params, root: Path) -> list[str]:
    """What this report was made from: params hash, package versions, md5 of its inputs. No commit: the report
    is a DVC output, and naming the commit would make it stale at every commit (git log -1 -- reports/report.md)."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    md = ["## Provenance", "",
          "- settings: the Settings section above (params as DVC recorded them: `dvc params diff`)",
          "- packages: " + ", ".join(f"{n} {ver(n)}" for n in ("seppo", "torch", "diffusers", "transformers",
                                                                 "accelerate")),
          f"- base model: `{params.base_model.source}` (revision {params.base_model.revision}); rounds as in "
          "`dvc.lock` (each checkpoint's md5 there)"]
    for rel in PROVENANCE_FILES:
        p = root / rel
        if p.exists():
            md.append(f"- `{rel}`: md5 `{hashlib.md5(p.read_bytes()).hexdigest()}`")
    return md + ["", "The commit is not written here (the report would be stale at every commit): "
                 "`git log -1 -- reports/report.md` names the one that recorded it.", ""]


# Round metrics comparing the anchor test's decisions with the world's ground truth (when logged).
ANCHOR_KEYS = (("oracle_flip_rate", "oracle flip rate"), ("anchor_flip_rate", "anchor flip rate"),
               ("anchor_accuracy", "anchor accuracy vs oracle"), ("decision_accuracy", "decision accuracy (s != 0)"),
               ("anchor_auc", "anchor AUC vs oracle"), ("share_s_dropped", "share dropped (s = 0)"))


def _anchor_section(rounds: list[dict]) -> list[str]:
    """Anchor vs oracle per round: only the keys some round logged; nothing when none did."""
    keys = [(k, title) for k, title in ANCHOR_KEYS if any(r and k in r for r in rounds)]
    if not keys:
        return []
    md = ["### Anchor vs oracle", "",
          "How often the anchor test flips a reference sample to a winner, against how often the world's "
          "ground-truth utility says it should (the oracle: the reference sample's utility beats its winner's), "
          "per round. Accuracy: the anchor's test (gap < 0) agrees with the oracle; AUC: how well -gap ranks "
          "should-flip samples first (0.5 = chance). One training run each.", "",
          "| round | " + " | ".join(t for _, t in keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rounds:
        if r and any(k in r for k, _ in keys):
            md.append(f"| {r['round']} | " + " | ".join(_fmt(r.get(k)) for k, _ in keys) + " |")
    return md + [""]


STYLE = ("body{font-family:sans-serif;max-width:1440px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
         "th{background:#f2f2f2;text-align:left}code{background:#f4f4f4;padding:0 3px;border-radius:3px}"
         "img{max-width:100%;height:auto;margin:6px 0;display:block}"
         "img[src^='data:image/gif']{image-rendering:pixelated}"  # the video previews: nearest-neighbour
         ".tw{overflow-x:auto}em{color:#444}")


MIME = {".png": "image/png", ".gif": "image/gif"}


def markdown_to_html(md_text: str, rep: Path, title: str = "SePPO run report") -> str:
    """CommonMark + tables (markdown-it-py); every image (PNG, animated GIF) embedded as a data URI
    (self-contained); also the video report's renderer."""
    from markdown_it import MarkdownIt

    mdit = MarkdownIt("commonmark").enable("table")
    tokens = mdit.parse(md_text)
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "image":
                rel = str(child.attrGet("src"))
                data = base64.b64encode((rep / rel).read_bytes()).decode()
                child.attrSet("src", f"data:{MIME[Path(rel).suffix.lower()]};base64,{data}")
    body = mdit.renderer.render(tokens, mdit.options, {})
    # a wide table scrolls inside its own box instead of widening the page
    body = body.replace("<table>", "<div class='tw'><table>").replace("</table>", "</table></div>")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def run_report(params: Params, root: Path = Path(".")) -> dict:
    md, page = build_report(params, root)
    with atomic_path(root / L.REPORT_MD) as tmp:
        tmp.write_text(md)
    with atomic_path(root / L.REPORT_HTML) as tmp:
        tmp.write_text(page)
    return {"report_md": L.REPORT_MD, "report_html": L.REPORT_HTML, "bytes_html": len(page)}
