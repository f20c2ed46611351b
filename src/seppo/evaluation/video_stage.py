"""The video evaluation: every checkpoint's clips against the held-out real clips; tidy table, CIs, win rates.

Inputs: the folders of `seppo video-eval-generate`, the base (theta_0) first, all with the same (prompt_id, seed)
rows; the real clips of `video.real` (the video ingest's folder format), matched to prompts by caption.
Per clip (one value per generated clip, so the prompt bootstrap applies as to any per-prompt score):
  utility  the Shapeland clip utility (ground truth from pixels, seppo.world.video.clip_utility), only when every
           prompt parses as a Shapeland clip caption
  psnr     dB over [0, 1] pixels, each frame capped at PSNR_CAP_DB, the mean over frames, then over the caption's
           real clips
  ssim     in [-1, 1], the mean over frames, then over the caption's real clips
  lpips    >= 0 (when video.lpips_weights is set), the mean over frames, then over the caption's real clips
Per checkpoint (set-level, one number, no CI): fid / fvd when video.fid_weights / video.fvd_weights are set: the
Frechet distance of all generated clips' features to all real clips' features.

Outputs
  <out>/scores.parquet  one row per checkpoint, prompt and seed with every per-clip metric as a column
  <out>/summary.csv     per checkpoint and metric: mean [95% CI], the paired difference to the base [95% CI], the
                        paired win rate vs the base [95% CI], n_prompts, n_seeds, scale, higher_is_better
  <out>/settings.json   what the numbers were computed with (the report reads it)
  <metrics>             the same numbers as JSON with scalar leaves: metrics.<checkpoint>.<metric>.{mean, ci_low,
                        ci_high, diff_vs_base, ..., win_ci_high}; fid / fvd as metrics.<checkpoint>.<fid|fvd>.value
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import VideoConfig
from ..io_utils import atomic_dir, write_json
from ..progress import progress
from .stats import bootstrap_mean, paired_win_rate
from .video_generate import VideoEvalError, load_eval_clips
from .video_metrics import PSNR_CAP_DB

FVD_ARCH = "r3d_18"
FID_ARCH = "inception_v3"
HIGHER_IS_BETTER = {"utility": True, "psnr": True, "ssim": True, "lpips": False, "fid": False, "fvd": False}
SCALES = {
    "utility": "[0, 1]; Shapeland clip utility from pixels (ground truth)",
    "psnr": f"dB over [0, 1] pixels; each frame capped at {PSNR_CAP_DB:g} dB (identical frames); mean over frames "
            "and the caption's real clips",
    "ssim": "[-1, 1]; 1 = identical; mean over frames and the caption's real clips",
    "lpips": ">= 0; 0 = identical; mean over frames and the caption's real clips",
    "fid": f">= 0; set-level Frechet distance of torchvision {FID_ARCH} frame features (all generated vs all "
           "real clips); no CI",
    "fvd": f">= 0; set-level Frechet distance of torchvision {FVD_ARCH} clip features (all generated vs all real "
           "clips); no CI",
}
CLIP_METRICS = ("utility", "psnr", "ssim", "lpips")


def _feature_sanity(cfg: VideoConfig) -> dict | None:
    """The embedded networks' sanity table (`seppo video-features` writes it beside the weights), for the report."""
    for w in (cfg.fvd_weights, cfg.fid_weights):
        path = Path(w).parent / "sanity.json" if w and w != "torchvision" else None
        if path is not None and path.is_file():
            return json.loads(path.read_text())
    return None


def set_scale(kind: str, net) -> str:
    """FID / FVD's scale, naming the network that made it: an embedded network's values are this world's only."""
    if not net.arch.startswith("shapeland"):
        return SCALES[kind]
    return (f">= 0; set-level Frechet distance of the embedded {net.arch} network's features (`seppo video-features`, "
            f"trained on video-world renders): an embedded-world {kind.upper()}, comparable between this project's "
            "checkpoints only, never with published values; all generated vs all real clips; no CI")
SET_NOTE = "set-level (all generated clips vs all real clips): one point value per checkpoint, no CI"
PAIR_BATCH = 64


def load_real_clips(cfg: VideoConfig, size: int | None = None) -> tuple[list[str], np.ndarray]:
    """(captions, clips (N, F, H, W, 3)) of the held-out real clips in ``video.real``: F frames as the ingest takes
    them (``video.sample_frames``), and, with ``size``, centre-cropped and resized to the generated clips' side
    (real time-lapse videos are rarely the model's resolution)."""
    from ..data.video_cache import fit_frames
    from ..data.video_ingest import ClipPolicy, ClipRejected, VideoSourceError, read_captions, read_clip

    real = Path(cfg.real)
    try:
        table = read_captions(real)
    except VideoSourceError as err:
        raise VideoEvalError(f"video.real: {err}") from None
    captions, clips = [], []
    for row in table.to_dict("records"):
        try:
            clip = read_clip(real / str(row["path"]), ClipPolicy(frames=cfg.frames, max_side=1 << 16,
                                                                 sample=cfg.sample_frames))
            clips.append(fit_frames(clip[None], size)[0] if size else clip)
        except (ClipRejected, FileNotFoundError, NotADirectoryError) as err:
            raise VideoEvalError(f"video.real: clip {row['clip_id']!r} ({real / str(row['path'])}): {err}") from None
        captions.append(str(row["caption"]).strip())
    if not clips:
        raise VideoEvalError(f"video.real={real}: no real clips")
    shapes = {c.shape for c in clips}
    if len(shapes) > 1:
        raise VideoEvalError(f"video.real={real}: clips of different shapes {sorted(shapes)}")
    return captions, np.stack(clips)


def _load_checkpoints(eval_dirs: list[Path]) -> tuple[list[str], dict, dict, dict]:
    """Names (base first), settings, tables and clips of the eval folders; every folder has the base's rows."""
    if not eval_dirs:
        raise VideoEvalError("no clip folders given (--clips, the base first)")
    names, settings, tables, clips = [], {}, {}, {}
    base_rows = None
    for d in map(Path, eval_dirs):
        t, c = load_eval_clips(d)
        s = json.loads((d / "settings.json").read_text())
        name = s["name"]
        if name in settings:
            raise VideoEvalError(f"{d}: checkpoint name {name!r} already used by another clip folder")
        rows = t.set_index(["prompt_id", "seed"]).prompt
        if rows.index.duplicated().any():
            raise VideoEvalError(f"{d}: (prompt_id, seed) {rows.index[rows.index.duplicated()][0]} appears twice")
        if base_rows is None:
            base_rows = rows
        else:
            missing = sorted(set(base_rows.index) - set(rows.index))
            extra = sorted(set(rows.index) - set(base_rows.index))
            if missing or extra:
                raise VideoEvalError(f"{d}: its (prompt_id, seed) rows differ from the base folder {eval_dirs[0]}: "
                                     f"missing {missing[:5]}, extra {extra[:5]} ({len(missing)} / {len(extra)})")
            other = rows.loc[base_rows.index]
            if not (other.to_numpy() == base_rows.to_numpy()).all():
                k = int(np.flatnonzero(other.to_numpy() != base_rows.to_numpy())[0])
                raise VideoEvalError(f"{d}: prompt of {base_rows.index[k]} is {other.iloc[k]!r}, the base folder's "
                                     f"{base_rows.iloc[k]!r}")
        names.append(name)
        settings[name], tables[name], clips[name] = s, t.drop(columns="png"), c
    return names, settings, tables, clips


def _paired_means(fn, gen: np.ndarray, prompts: list[str], real_by_caption: dict[str, list[int]],
                  real: np.ndarray) -> np.ndarray:
    """Per generated clip: the mean of fn(clip, real clip) over its caption's real clips."""
    pairs = [(i, j) for i, p in enumerate(prompts) for j in real_by_caption[p]]
    vals = np.concatenate([
        np.asarray(fn(gen[[i for i, _ in chunk]], real[[j for _, j in chunk]]), dtype=float)
        for chunk in (pairs[k:k + PAIR_BATCH] for k in range(0, len(pairs), PAIR_BATCH))])
    gi = np.array([i for i, _ in pairs])
    return np.bincount(gi, weights=vals, minlength=len(gen)) / np.bincount(gi, minlength=len(gen))


def _utility_reason(prompts: list[str]) -> str | None:
    """None when every prompt is a Shapeland clip caption, else why utility is not computed."""
    from ..world.video import ClipCaptionError, parse_clip_caption

    for p in prompts:
        try:
            parse_clip_caption(p)
        except ClipCaptionError as err:
            return f"not computed: prompt {p!r} is not a Shapeland clip caption ({err})"
    return None


def _net(kind: str, weights: str, device: str):
    from .video_metrics import LPIPS, FeatureNet

    key = {"lpips": "lpips_weights", "fid": "fid_weights", "fvd": "fvd_weights"}[kind]
    try:
        if kind == "lpips":
            return LPIPS(weights, device=device)
        return FeatureNet(kind, FID_ARCH if kind == "fid" else FVD_ARCH, weights, device=device)
    except (FileNotFoundError, ValueError) as err:
        raise VideoEvalError(f"video.{key}: {err}") from None


def _summary(scores: pd.DataFrame, names: list[str], metrics: list[str], n_boot: int, seed: int) -> list[dict]:
    rows = []
    base = names[0]
    for metric in metrics:
        hib = HIGHER_IS_BETTER[metric]
        bw = scores[scores.checkpoint == base].pivot(index="prompt_id", columns="seed", values=metric).sort_index()
        for name in names:
            wide = scores[scores.checkpoint == name].pivot(index="prompt_id", columns="seed", values=metric)
            wide = wide.loc[bw.index, bw.columns]
            a, b = wide.to_numpy(float), bw.to_numpy(float)
            mean, lo, hi = bootstrap_mean(a, n_boot, seed)
            row = {"checkpoint": name, "metric": metric, "level": "clip", "higher_is_better": hib, "mean": mean,
                   "ci_low": lo, "ci_high": hi, "diff_vs_base": np.nan, "diff_ci_low": np.nan,
                   "diff_ci_high": np.nan, "win_rate_vs_base": np.nan, "win_ci_low": np.nan, "win_ci_high": np.nan,
                   "n_prompts": a.shape[0], "n_seeds": a.shape[1], "scale": SCALES[metric]}
            if name != base:
                d, dl, dh = bootstrap_mean(a - b, n_boot, seed)
                # "win" = better than the base in the metric's own direction; ties count half
                w, wl, wh = paired_win_rate(a, b, n_boot, seed) if hib else paired_win_rate(-a, -b, n_boot, seed)
                row.update(diff_vs_base=d, diff_ci_low=dl, diff_ci_high=dh, win_rate_vs_base=w, win_ci_low=wl,
                           win_ci_high=wh)
            rows.append(row)
    return rows


def run_video_evaluate(cfg: VideoConfig, eval_dirs: list[Path], out: Path, metrics: Path) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    names, settings, tables, gen = _load_checkpoints(list(eval_dirs))
    base = names[0]
    prompts = tables[base].prompt.tolist()
    real_caps, real = load_real_clips(cfg, gen[base].shape[2] if gen[base].shape[2] == gen[base].shape[3] else None)
    by_caption: dict[str, list[int]] = {}
    for j, c in enumerate(real_caps):
        by_caption.setdefault(c, []).append(j)
    for p in dict.fromkeys(prompts):
        if p.strip() not in by_caption:
            raise VideoEvalError(f"caption {p!r} has no real clip in video.real={cfg.real}: PSNR / SSIM / LPIPS "
                                 "compare each generated clip with the real clips of its caption")
    by_prompt = {p: by_caption[p.strip()] for p in dict.fromkeys(prompts)}
    for name in names:
        if gen[name].shape[1:] != real.shape[1:]:
            raise VideoEvalError(f"{name}: clips of shape {gen[name].shape[1:]} (frames, H, W, 3), the real clips "
                                 f"in video.real={cfg.real} {real.shape[1:]}")
    from .video_metrics import psnr, ssim

    no_utility = _utility_reason(prompts)
    per_clip: list[tuple[str, object]] = [("psnr", psnr), ("ssim", ssim)]
    if cfg.lpips_weights:
        per_clip.append(("lpips", _net("lpips", cfg.lpips_weights, device)))
    set_nets = {k: _net(k, w, device) for k, w in (("fid", cfg.fid_weights), ("fvd", cfg.fvd_weights)) if w}
    if set_nets and min(len(real), *(len(c) for c in gen.values())) < 2:
        raise VideoEvalError(f"FID / FVD need at least 2 clips per set: {len(real)} real clips in video.real, "
                             f"{ {n: len(c) for n, c in gen.items()} } generated")
    real_features = {k: net.features(real) for k, net in set_nets.items()}
    tabs, set_values = [], {}
    steps = len(per_clip) + (no_utility is None) + len(set_nets)
    with progress(len(names) * steps, "video-evaluate", unit="metric") as bar:
        for name in names:
            t, clips = tables[name], gen[name]
            cols = {"checkpoint": name, "prompt_id": t.prompt_id, "prompt": t.prompt, "seed": t.seed,
                    "sample_seed": t.sample_seed}
            if no_utility is None:
                from ..world.video import clip_utility

                cols["utility"] = [clip_utility(c, p).utility for c, p in zip(clips, t.prompt)]
                bar.update(1)
            for metric, fn in per_clip:
                bar.set_postfix(checkpoint=name, metric=metric)
                cols[metric] = _paired_means(fn, clips, t.prompt.tolist(), by_prompt, real)
                bar.update(1)
            tabs.append(pd.DataFrame(cols))
            from .video_metrics import frechet_distance

            for kind, net in set_nets.items():
                set_values.setdefault(name, {})[kind] = frechet_distance(net.features(clips), real_features[kind])
                bar.update(1)
    scores = pd.concat(tabs, ignore_index=True)
    metric_names = [m for m in CLIP_METRICS if m in scores.columns]
    bad = ~np.isfinite(scores[metric_names].to_numpy(float))
    if bad.any():
        raise ValueError(f"non-finite per-clip scores (first rows):\n{scores[bad.any(1)].head(5)}")
    rows = _summary(scores, names, metric_names, cfg.n_boot, cfg.seed)
    first = scores[scores.checkpoint == base]
    for kind in set_nets:
        for name in names:
            rows.append({"checkpoint": name, "metric": kind, "level": "set", "higher_is_better": False,
                         "mean": set_values[name][kind], "n_prompts": first.prompt_id.nunique(),
                         "n_seeds": first.seed.nunique(), "scale": set_scale(kind, set_nets[kind])})
    summary = pd.DataFrame(rows, columns=list(rows[0]))
    s0 = settings[base]
    eval_settings = {
        "prompts": s0.get("prompts"), "n_prompts": int(first.prompt_id.nunique()),
        "seeds": sorted(int(x) for x in first.seed.unique()), "frames": int(real.shape[1]),
        "sampler": s0.get("sampler"), "steps": s0.get("steps"), "guidance": s0.get("guidance"),
        "frame_noise_correlation": s0.get("frame_noise_correlation", 0.0),
        "real": cfg.real, "real_clips": int(len(real)), "real_size": [int(real.shape[2]), int(real.shape[3])],
        "n_boot": cfg.n_boot, "bootstrap_seed": cfg.seed,
        "ci": "95% percentile bootstrap over prompts (the seeds of a prompt move together)",
        "lpips_weights": cfg.lpips_weights, "fid_weights": cfg.fid_weights, "fvd_weights": cfg.fvd_weights,
        "fid_network": set_nets["fid"].arch if "fid" in set_nets else None,
        "fvd_network": set_nets["fvd"].arch if "fvd" in set_nets else None,
        "psnr_cap_db": PSNR_CAP_DB,
        "feature_sanity": _feature_sanity(cfg),
    }
    notes = {"utility": no_utility or "ground truth: Shapeland clip utility from pixels",
             **{k: SET_NOTE for k in ("fid", "fvd")},
             "win_rate": "share of (prompt, seed) pairs where the checkpoint beats the base in the metric's own "
                         "direction (higher_is_better), ties count half",
             "diff_vs_base": "paired mean of (checkpoint - base) over the same prompts and seeds"}
    checkpoints = {n: {k: settings[n][k] for k in ("checkpoint", "round", "loss_type", "reference")
                       if k in settings[n]} for n in names}
    with atomic_dir(out) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        summary.to_csv(tmp / "summary.csv", index=False, float_format="%.6f")
        write_json(tmp / "settings.json", {"settings": eval_settings, "checkpoints": checkpoints,
                                           "metrics": metric_names + list(set_nets), "notes": notes,
                                           "scales": {**{m: SCALES[m] for m in metric_names},
                                                      **{k: set_scale(k, n) for k, n in set_nets.items()}}})
    result: dict = {"settings": eval_settings, "notes": notes, "checkpoints": checkpoints,
                    "metrics": {n: {} for n in names}}
    for r in summary.to_dict("records"):
        entry = result["metrics"][r["checkpoint"]]
        if r["level"] == "set":
            entry[r["metric"]] = {"value": round(float(r["mean"]), 6)}
            continue
        e = {k: round(float(r[k]), 6) for k in ("mean", "ci_low", "ci_high")}
        if r["checkpoint"] != base:
            e.update({k: round(float(r[k]), 6) for k in ("diff_vs_base", "diff_ci_low", "diff_ci_high",
                                                         "win_rate_vs_base", "win_ci_low", "win_ci_high")})
        entry[r["metric"]] = e
    write_json(metrics, result)
    return result
