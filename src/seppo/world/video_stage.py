"""`seppo video-world`: the embedded text-to-video world on disk, in the video ingest's folder format.

Writes under ``out`` (each folder built aside and swapped in):
  winners/   captions.csv + clips/<clip_id>/000.png ...  the preferred clip of every labelled pair
             (ties dropped): SePPO's and SFT's training data
  losers/    the same for the other clip of each pair (the Diffusion-DPO baseline only)
  eval_real/ clean renders of the held-out captions (`real_per_eval_prompt` each): the reference
             clips of FID, FVD, LPIPS, SSIM and PSNR
  web/       clips.npy (N, F, H, W, 3) uint8 + captions.parquet: the corpus the embedded motion adapter is
             pretrained on (models of skill web_skills; captions as asked)
  prompts.parquet  prompt_id, caption, split (train / eval)
  pairs_truth.parquet  per pair: the two clips' true utilities, the label, the models
and returns the world's metrics (winners' and losers' mean pixel utility, the label's agreement with
the truth). Frames are lossless PNG, so the clips read back bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config import VideoWorldConfig
from ..io_utils import atomic_dir, atomic_path
from .generators import Annotator
from .video import ClipScene, clip_skill_generator, clip_utility, random_clip, render_clip, true_clip_utility


def _split(cfg: VideoWorldConfig, rng: np.random.Generator) -> tuple[list[ClipScene], list[ClipScene]]:
    """Distinct feasible clip captions: the held-out ones first, then the training ones."""
    seen: dict[str, ClipScene] = {}
    need = cfg.eval_prompts + cfg.train_prompts
    for _ in range(200 * need):
        c = random_clip(rng, cfg.image_size)
        seen.setdefault(c.caption(), c)
        if len(seen) == need:
            break
    else:
        raise ValueError(f"only {len(seen)} distinct feasible clip captions found; lower video_world.train_prompts "
                         f"or eval_prompts (asked {need})")
    clips = list(seen.values())
    return clips[:cfg.eval_prompts], clips[cfg.eval_prompts:]


def _write_clips(out: Path, rows: list[tuple[str, str, np.ndarray]]) -> None:
    """captions.csv + clips/<clip_id>/NNN.png, built aside and swapped in."""
    from PIL import Image

    with atomic_dir(out) as tmp:
        (tmp / "clips").mkdir()
        for cid, _, frames in rows:
            d = tmp / "clips" / cid
            d.mkdir()
            for k, f in enumerate(frames):
                Image.fromarray(f).save(d / f"{k:03d}.png", optimize=False)
        pd.DataFrame([(cid, cap, f"clips/{cid}") for cid, cap, _ in rows],
                     columns=["clip_id", "caption", "path"]).to_csv(tmp / "captions.csv", index=False)


def run_video_world(cfg: VideoWorldConfig, out: Path) -> dict:
    """Write the video world under ``out``; return its metrics."""
    # independent streams per product, so changing one size does not reshuffle the others
    s_split, s_pairs, s_real, s_web = (np.random.default_rng(x) for x in np.random.SeedSequence(cfg.seed).spawn(4))
    eval_clips, train_clips = _split(cfg, s_split)
    gens = [clip_skill_generator(s) for s in cfg.pair_generator_skills]
    annotator = Annotator(cfg.annotator_temperature, cfg.tie_margin, cfg.tie_prob)
    winners, losers, truth = [], [], []
    for p, clip in enumerate(train_clips):
        for j in range(cfg.pairs_per_prompt):
            g0, g1 = (gens[i] for i in s_pairs.integers(len(gens), size=2))
            (f0, sh0, d0), (f1, sh1, d1) = (g.generate(clip, cfg.image_size, cfg.frames, s_pairs) for g in (g0, g1))
            u0, u1 = true_clip_utility(clip, sh0, d0), true_clip_utility(clip, sh1, d1)
            l0, l1 = annotator.label(u0, u1, s_pairs)
            pid = f"train-{p:04d}-{j:02d}"
            truth.append({"pair_id": pid, "caption": clip.caption(), "true_utility_0": u0, "true_utility_1": u1,
                          "label_0": l0, "model_0": g0.name, "model_1": g1.name})
            if l0 == l1:
                continue  # a tie has no winner
            (fw, fl) = (f0, f1) if l0 > l1 else (f1, f0)
            winners.append((pid, clip.caption(), fw))
            losers.append((pid, clip.caption(), fl))
    real = [(f"eval-{p:04d}-{r}", c.caption(), render_clip(c, cfg.image_size, cfg.frames, s_real))
            for p, c in enumerate(eval_clips) for r in range(cfg.real_per_eval_prompt)]
    web_gens = [clip_skill_generator(k) for k in cfg.web_skills]
    web_clips, web_caps = [], []
    for _ in range(cfg.web_size):
        clip = random_clip(s_web, cfg.image_size)
        g = web_gens[s_web.integers(len(web_gens))]
        web_clips.append(g.generate(clip, cfg.image_size, cfg.frames, s_web)[0])
        web_caps.append(clip.caption())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "web") as tmp:
        np.save(tmp / "clips.npy", np.stack(web_clips))
        pd.DataFrame({"caption": web_caps}).to_parquet(tmp / "captions.parquet", index=False)
    _write_clips(out / "winners", winners)
    _write_clips(out / "losers", losers)
    _write_clips(out / "eval_real", real)
    prompts = pd.DataFrame({"prompt_id": [f"eval-{i:04d}" for i in range(len(eval_clips))]
                            + [f"train-{i:04d}" for i in range(len(train_clips))],
                            "caption": [c.caption() for c in eval_clips + train_clips],
                            "split": ["eval"] * len(eval_clips) + ["train"] * len(train_clips)})
    with atomic_path(out / "prompts.parquet") as tmp:
        prompts.to_parquet(tmp, index=False)
    t = pd.DataFrame(truth)
    with atomic_path(out / "pairs_truth.parquet") as tmp:
        t.to_parquet(tmp, index=False)

    def mean_u(rows):
        return float(np.mean([clip_utility(f, cap).utility for _, cap, f in rows])) if rows else float("nan")

    decided = t[t.label_0 != 0.5]
    agree = ((decided.true_utility_0 > decided.true_utility_1) == (decided.label_0 == 1.0)).mean()
    return {"pairs": len(t), "ties": int((t.label_0 == 0.5).sum()), "winners": len(winners), "web_clips": cfg.web_size,
            "eval_prompts": len(eval_clips), "real_clips": len(real), "frames": cfg.frames,
            "image_size": cfg.image_size, "winners_mean_utility": mean_u(winners),
            "losers_mean_utility": mean_u(losers), "real_mean_utility": mean_u(real),
            "label_agrees_with_truth": float(agree)}
