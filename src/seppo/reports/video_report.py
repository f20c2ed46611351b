"""The video report: Markdown + self-contained HTML, from the video evaluation's outputs and the clips.

Inputs: <eval_dir>/{summary.csv, scores.parquet, settings.json} (`seppo video-evaluate`), the clip folders of
`seppo video-eval-generate` (the base first) and the params. Outputs in <out_dir>:
  report.md, report.html   the same text; the HTML embeds every figure as a data URI (PNG strips, animated GIFs)
  figures/strip_<prompt_id>.png          per preview prompt: one row of frames per checkpoint
  figures/clip_<checkpoint>_<prompt_id>.gif   per checkpoint and preview prompt: the clip, animated
No clock, no host name, no random draw: the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params
from ..evaluation.video_generate import VideoEvalError, load_eval_clips
from ..io_utils import atomic_dir, atomic_path
from .build import markdown_to_html

DPI = 100
MIN_FRAME_PX = 96  # strip frames are upscaled (nearest neighbour, integer factor) to at least this many pixels
GIF_MIN_PX = 192  # the animated previews, likewise: large enough to see a 32-px clip's objects move
GAP_PX = 4  # between frames of a strip
LABEL_PX = 190  # the checkpoint labels on the left of a strip
GIF_MS = 250  # per frame
BAR_PX = 4  # the GIF's progress bar under the frame (also keeps equal frames apart: GIF writers merge them)
NAMES = {"utility": "utility", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID", "fvd": "FVD"}


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(s))


def _scale(h: int, at_least: int = MIN_FRAME_PX) -> int:
    return max(1, math.ceil(at_least / h))


def _up(frame: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def _strip_figure(rows: list[tuple[str, np.ndarray]], title: str, path: Path) -> None:
    """One row of upscaled frames per (label, clip), placed pixel for pixel (figimage, no resampling)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, h, w, _ = rows[0][1].shape
    k = _scale(h)
    fh, fw = h * k, w * k
    strip_w = f * fw + (f - 1) * GAP_PX
    width = LABEL_PX + strip_w + 12
    title_lines = textwrap.wrap(title, max(30, int(width / 8)))[:4]  # ~7 px per character at 10.5 pt
    top = 14 + 18 * len(title_lines) + 18  # the title, then the frame numbers
    row_h = max(fh, 60) + 10
    height = top + len(rows) * row_h + 6
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.text(0.5, 1 - 8 / height, "\n".join(title_lines), ha="center", va="top", fontsize=10.5)
    for t in range(f):
        x = LABEL_PX + t * (fw + GAP_PX) + fw / 2
        fig.text(x / width, 1 - (top - 4) / height, f"frame {t}", ha="center", va="bottom", fontsize=8, color="#555")
    for r, (label, clip) in enumerate(rows):
        y_top = top + r * row_h
        canvas = np.full((fh, strip_w, 3), 255, np.uint8)
        for t in range(f):
            canvas[:, t * (fw + GAP_PX): t * (fw + GAP_PX) + fw] = _up(clip[t], k)
        fig.figimage(canvas, xo=LABEL_PX, yo=height - y_top - fh, origin="upper")
        name, _, note = label.partition("\n")
        fig.text(8 / width, 1 - (y_top + 2) / height, name, ha="left", va="top", fontsize=10, fontweight="bold")
        if note:
            fig.text(8 / width, 1 - (y_top + 22) / height, note, ha="left", va="top", fontsize=9, linespacing=1.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def _gif(clip: np.ndarray, path: Path) -> None:
    """An animated GIF of the clip, upscaled, one shared palette, a progress bar under the frames; looped."""
    from PIL import Image

    f, h, w, _ = clip.shape
    k = _scale(h, GIF_MIN_PX)
    frames = []
    for t in range(f):
        img = np.full((h * k + BAR_PX + 2, w * k, 3), 255, np.uint8)
        img[: h * k] = _up(clip[t], k)
        img[h * k + 2:, : round(w * k * (t + 1) / f)] = 80
        frames.append(img)
    sheet = Image.fromarray(np.concatenate(frames, axis=0))
    palette = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal = [Image.fromarray(x).quantize(palette=palette, dither=Image.Dither.NONE) for x in frames]
    with atomic_path(path) as tmp:
        pal[0].save(tmp, format="GIF", save_all=True, append_images=pal[1:], duration=GIF_MS, loop=0,
                    optimize=False, disposal=1)


def _arm_round(name: str, is_base: bool) -> tuple[str, object]:
    """(arm, round) read off an eval name: base, round_k (seppo), sft_round_k, dpo_round_k."""
    if is_base:
        return "theta_0", 0
    m = re.fullmatch(r"(?:(\w+?)_)?round_(\d+)", name)
    return ((m.group(1) or "seppo"), int(m.group(2))) if m else ("-", "-")


def _fmt(x, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def _ci(r, lo: str, hi: str, nd: int = 3) -> str:
    return f"[{_fmt(r[lo], nd)}, {_fmt(r[hi], nd)}]"


SANITY_ROWS = {"clean": "the same clean clips (identical sets)", "clean_redraw": "the same captions, drawn again",
               "other_change": "the same captions, another change drawn", "frozen": "the first frame held (no change)",
               "flicker": "30% of frames flicker", "shake": "objects shake 2.5 px", "frame_noise": "frame noise (std 15)"}


def _sanity_table(sanity: dict | None) -> list[str]:
    """What the embedded networks say of sets broken on purpose, against clean clips: the scale of a difference."""
    if not sanity:
        return []
    rows = sanity["sanity"]["vs_reference"]
    acc = {k: sanity[k]["held_out_accuracy"] for k in ("frame_network", "clip_network")}
    md = ["How to read these values (the embedded networks, `seppo video-features`): FID / FVD of rendered sets "
          f"against {sanity['sanity']['reference']}, the same size as the evaluation's sets.", "",
          "| set (same captions as the clean clips) | FID | FVD |", "|---|---|---|"]
    md += [f"| {SANITY_ROWS.get(k, k)} | {v['fid']:.3f} | {v['fvd']:.3f} |" for k, v in rows.items()]
    md += ["", "Held-out accuracy of the networks' training heads: frames "
           + ", ".join(f"{k} {v:.2f}" for k, v in acc["frame_network"].items()) + "; clips "
           + ", ".join(f"{k} {v:.2f}" for k, v in acc["clip_network"].items()) + ".", ""]
    return md


def _metric_tables(summary: pd.DataFrame, names: list[str], scales: dict, notes: dict,
                   sanity: dict | None = None) -> list[str]:
    md = ["## Metrics", "",
          "Per clip, then the mean over prompts and seeds; 95% percentile bootstrap CIs over prompts (the seeds of a "
          "prompt move together). The difference is the paired mean of (checkpoint - base) over the same prompts and "
          "seeds; the win rate is the share of those pairs where the checkpoint beats the base in the metric's own "
          "direction (ties count half).", ""]
    clip = summary[summary.level == "clip"]
    if "utility" not in set(clip.metric):
        md += [f"**Utility: {notes.get('utility', 'not computed')}.**", ""]
    for metric in dict.fromkeys(clip.metric):
        g = clip[clip.metric == metric].set_index("checkpoint")
        hib = bool(g.higher_is_better.iloc[0])
        nd = {"psnr": 2, "lpips": 4}.get(metric, 3)
        md += [f"### {NAMES.get(metric, metric)} ({'higher' if hib else 'lower'} is better)", "",
               f"Scale: {scales.get(metric, '')}.", "",
               "| checkpoint | mean [95% CI] | difference vs base [95% CI] | win rate vs base [95% CI] |",
               "|---|---|---|---|"]
        for n in names:
            r = g.loc[n]
            if n == names[0]:
                md.append(f"| {n} | {_fmt(r['mean'], nd)} {_ci(r, 'ci_low', 'ci_high', nd)} | (base) | (base) |")
            else:
                md.append(f"| {n} | {_fmt(r['mean'], nd)} {_ci(r, 'ci_low', 'ci_high', nd)} | "
                          f"{_fmt(r['diff_vs_base'], nd)} {_ci(r, 'diff_ci_low', 'diff_ci_high', nd)} | "
                          f"{_fmt(r['win_rate_vs_base'])} {_ci(r, 'win_ci_low', 'win_ci_high')} |")
        md.append("")
    sets = summary[summary.level == "set"]
    if len(sets):
        kinds = list(dict.fromkeys(sets.metric))
        md += ["### FID / FVD (set-level, lower is better)", "",
               "One number per checkpoint: all its generated clips against all real clips, so no CI. "
               + " ".join(f"{NAMES[k]}: {scales.get(k, '')}." for k in kinds), "",
               "| checkpoint | " + " | ".join(NAMES[k] for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
        g = sets.set_index(["checkpoint", "metric"])["mean"]
        for n in names:
            md.append(f"| {n} | " + " | ".join(_fmt(g.get((n, k)), 3) for k in kinds) + " |")
        md.append("")
        md += _sanity_table(sanity)
    else:
        md += ["FID / FVD: not computed (video.fid_weights and video.fvd_weights are null).", ""]
    return md


def _study_section(params: Params, root: Path, figures: Path) -> list[str]:
    """The multi-seed table (final round, clip utility) with paired differences and the curves over rounds; empty
    when the video study has not run. The curves are copied into the report's figures."""
    import shutil

    st = params.video_study
    d = root / st.out
    if not (d / "aggregate.csv").exists():
        return []
    t = pd.read_csv(d / "aggregate.csv")
    if t.empty:
        return []
    K = int(t["round"].max())
    refs = [c for c in st.compare_to if f"diff_vs_{c}" in t.columns]
    md = ["## Multi-seed video study", "",
          f"`seppo video-study` (records and the full tables in `{st.out}/`): each trained row is one arm from theta_0, "
          f"{K} rounds, training seeds {st.seeds} (a row with fewer is a one-seed sweep point); every round evaluated on "
          "the clips above's prompts and sampling seeds. Mean over training seeds and prompts; 95% CIs from a two-level "
          f"bootstrap ({st.n_boot} resamples of the seeds, crossed with the prompts); differences paired on seed and "
          "prompt. A difference is resolved when its CI excludes 0.", ""]
    from ..study.video import stale_note

    md += stale_note(params, root)
    for metric in [m for m in ("clip_utility", "psnr", "ssim") if m in set(t.metric)]:
        g = t[(t.metric == metric) & ((t["round"] == K) | (t["round"] == 0))]
        head = ["variant", "seeds", "lr", "mean [95% CI]"] + [f"- {c} [95% CI]" for c in refs]
        md += [f"**{metric}**, round {K} (round 0 = theta_0):", "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head)]
        for r in g.to_dict("records"):
            cells = [r["label"], str(r["seeds"]), "" if pd.isna(r.get("lr")) else f"{r['lr']:g}",
                     f"{_fmt(r['mean'])} {_ci(r, 'ci_low', 'ci_high')}"]
            for c in refs:
                dv = r.get(f"diff_vs_{c}")
                cells.append("" if dv is None or pd.isna(dv) else
                             f"{dv:+.3f} {_ci(r, f'diff_vs_{c}_ci_low', f'diff_vs_{c}_ci_high')}")
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    sm = d / "set_metrics.csv"
    if sm.exists():  # the aggregate's own FID / FVD table (mean over seeds [min, max])
        from ..study.video import set_metric_markdown

        md += set_metric_markdown(params, pd.read_csv(sm))
    curve = d / "curves_clip_utility.png"
    if curve.exists():
        shutil.copyfile(curve, figures / "study_curves_clip_utility.png")
        md += ["Clip utility per round, mean and 95% two-level CI band per variant:", "",
               "![video study curves](figures/study_curves_clip_utility.png)", ""]
    return md


def build_video_report(params: Params, eval_dir: Path, eval_clip_dirs: list[Path], out_dir: Path,
                       root: Path | None = None) -> tuple[str, list[Path]]:
    """The Markdown text; writes the figures into out_dir/figures (swapped in as a whole). ``root``: the project
    whose video study (video_study.out under it) the report shows; None = no study section."""
    v = params.video
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    info = json.loads((eval_dir / "settings.json").read_text())
    summary = pd.read_csv(eval_dir / "summary.csv")
    scores = pd.read_parquet(eval_dir / "scores.parquet")
    loaded = []
    for d in eval_clip_dirs:
        table, clips = load_eval_clips(d)
        loaded.append((json.loads((Path(d) / "settings.json").read_text())["name"], table, clips))
    names = [n for n, _, _ in loaded]
    if list(dict.fromkeys(summary.checkpoint)) != names:
        raise VideoEvalError(f"{eval_dir}/summary.csv has checkpoints {list(dict.fromkeys(summary.checkpoint))}, "
                             f"the clip folders {names} (the same folders, the base first)")
    es, ckpts, notes, scales = info["settings"], info["checkpoints"], info["notes"], info["scales"]
    seed = es["seeds"][0]
    base_t = loaded[0][1]
    preview = base_t[base_t.seed == seed].head(v.preview_prompts)
    strips, gifs = [], {}
    with atomic_dir(out_dir / "figures") as tmp:
        for pid, prompt in zip(preview.prompt_id, preview.prompt):
            rows = []
            for name, table, clips in loaded:
                i = int(np.flatnonzero(((table.prompt_id == pid) & (table.seed == seed)).to_numpy())[0])
                sc = scores[(scores.checkpoint == name) & (scores.prompt_id == pid) & (scores.seed == seed)]
                note = "\n".join(f"{NAMES[m]} {sc[m].iloc[0]:.{2 if m == 'psnr' else 3}f}"
                                 for m in ("utility", "psnr", "ssim") if m in sc.columns and len(sc))
                rows.append((f"{name}\n{note}" if note else name, clips[i]))
                gif = f"clip_{_safe(name)}_{_safe(pid)}.gif"
                _gif(clips[i], tmp / gif)
                gifs[(name, pid)] = gif
            strip = f"strip_{_safe(pid)}.png"
            _strip_figure(rows, f"{prompt}  (seed {seed})", tmp / strip)
            strips.append((pid, prompt, strip))
        study = _study_section(params, Path(root), tmp) if root is not None else []
    figs = sorted((out_dir / "figures").iterdir())
    tr = params.train
    ov = v.train_overrides
    bm = params.base_model
    seed_tr = ov.get("seed", tr.seed)
    knobs = (f"criterion `{ov.get('criterion', tr.criterion)}`, strategy `{ov.get('strategy', tr.strategy)}`, "
             f"lr {ov.get('lr', tr.lr):g}, beta {ov.get('beta', tr.beta):g}, "
             f"{ov.get('updates_per_round', tr.updates_per_round)} updates per round, micro-batch "
             f"{ov.get('micro_batch', tr.micro_batch)} x accumulation {ov.get('grad_accum', tr.grad_accum)}, "
             f"training seed {seed_tr}")
    md = ["# SePPO text-to-video report", "",
          "Regenerated by `seppo video-report` from tracked outputs only (the video evaluation's tables, the "
          "evaluation clips, params).", "",
          f"**One training run.** Every number from here to the multi-seed section comes from ONE training run per "
          f"checkpoint (one training seed, train.seed = {seed_tr}). Their 95% CIs are over evaluation prompts and "
          "sampling seeds only: they do not include the variation between training runs"
          + (" (the multi-seed video study below does)." if study else "."), "",
          "## Settings", "",
          f"- evaluation clips: {es['n_prompts']} prompts from `{es['prompts']}` (split eval), seeds {es['seeds']}, "
          f"{es['frames']} frames; {es['sampler']} {es['steps']} steps, guidance {es['guidance']}; each clip seeded "
          "by sha256(seed, prompt); initial noise "
          + (f"frame-correlated ({es['frame_noise_correlation']:g}, theta_0's recipe)"
             if es.get("frame_noise_correlation") else "independent per frame"),
          f"- references: {es['real_clips']} real clips in `{es['real']}` "
          f"({es['real_size'][0]}x{es['real_size'][1]} px), matched to prompts by caption",
          f"- metrics: LPIPS `{es['lpips_weights'] or 'skipped (video.lpips_weights is null)'}`, FID "
          f"`{es['fid_weights'] or 'skipped (video.fid_weights is null)'}`, FVD "
          f"`{es['fvd_weights'] or 'skipped (video.fvd_weights is null)'}`; {es['ci']}, {es['n_boot']} resamples, "
          f"bootstrap seed {es['bootstrap_seed']}",
          f"- training: arms {list(v.arms)}, {ov.get('rounds', tr.rounds)} round(s) each from theta_0, trainable "
          f"`{v.trainable}`; train overrides for video {json.dumps(ov, sort_keys=True)}; in effect: {knobs}",
          f"- image model under AnimateDiff: `{bm.source}` "
          f"({'revision ' + bm.revision if bm.revision else 'no Hub revision: built here or a local folder'})", "",
          "| checkpoint | arm | round | folder | loss (trainer's record) | reference checkpoint |",
          "|---|---|---|---|---|---|"]
    for n in names:
        c = ckpts.get(n, {})
        arm, k = _arm_round(n, n == names[0])
        md.append(f"| {n} | {arm} | {c.get('round', k)} | `{c.get('checkpoint', '')}` | {c.get('loss_type', '-')} | "
                  f"{('`' + c['reference'] + '`') if c.get('reference') else '-'} |")
    md.append("")
    md += _metric_tables(summary, names, scales, notes, es.get("feature_sanity"))
    md += ["## Frame strips", "",
           f"The first {len(strips)} evaluation prompts, seed {seed}: one row per checkpoint, frames left to right, "
           f"upscaled x{_scale(int(loaded[0][2].shape[2]))} (nearest neighbour). Under each checkpoint's name: that "
           "clip's scores.", ""]
    for pid, prompt, strip in strips:
        md += [f"![{pid}](figures/{strip})", ""]
    md += ["## Animated previews", "",
           f"The same clips as GIFs ({GIF_MS} ms per frame, looped; the bar under each clip shows the frame).", "",
           "| prompt | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for pid, prompt, _ in strips:
        md.append(f"| {prompt.replace('|', '/')} | "
                  + " | ".join(f"![{n} {pid}](figures/{gifs[(n, pid)]})" for n in names) + " |")
    md.append("")
    md += study
    return "\n".join(md).rstrip("\n") + "\n", figs


def run_video_report(params: Params, eval_dir: Path, eval_clip_dirs: list[Path], out_dir: Path,
                     root: Path | None = None) -> dict:
    out_dir = Path(out_dir)
    md, figs = build_video_report(params, eval_dir, eval_clip_dirs, out_dir, root)
    page = markdown_to_html(md, out_dir, "SePPO text-to-video report")
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(md)
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(page)
    return {"report_md": str(out_dir / "report.md"), "report_html": str(out_dir / "report.html"),
            "figures": [p.name for p in figs], "bytes_html": len(page)}
