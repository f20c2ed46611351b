"""One row of docs/video.md "The video base: what was tried": pretrain the embedded motion model with a recipe,
then score its clips for the held-out prompts with the clip utility (and its parts).

    python scripts/video_base_recipe.py OUT [--base '{"steps": 3000, "ema_decay": 0.998}']
                                            [--web-world '{"web_skills": [1.0]}'] [--threads 1]

--base overrides params.video_base; --web-world writes a web corpus with params.video_world plus these overrides
under OUT/world/web (the rest of that world is not used) instead of reading data/video_world/web. The clips follow
params.video (eval prompts x eval seeds, its sampler, steps, guidance, frames) exactly as `seppo video-evaluate`
generates them. One JSON line per run is appended to OUT/../recipes.jsonl. Needs models/base and
data/video_world (`dvc repro video/dvc.yaml:video_world`). Single runs: no interval (docs/video.md says how to read
them). Also printed, to tell where a recipe loses: the mean step (px per frame) of the moving clips along their
named direction (the renders move ~1.4 px).

--motion-loss LAMBDA (an experiment, not in the pipeline): the pretraining loss gains LAMBDA times the squared
frame-to-frame difference of the epsilon error, weighted per clip as the loss itself (Min-SNR). A prediction that
keeps the scene still while the clip moves leaves an error that changes from frame to frame; this term weights
exactly that part (a temporal-gradient loss), which the plain MSE, dominated by each frame's content, barely sees
when a whole move is ~1.25 latent pixels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def moving_step(clips: np.ndarray, captions: list[str]) -> float:
    """Mean per-frame centroid step along the named direction, over the moving clips (pixels at 32 px)."""
    from seppo.world.utility import detect
    from seppo.world.video import MOVES, parse_clip_caption

    steps = []
    for clip, caption in zip(clips, captions):
        change = parse_clip_caption(caption).change
        if change not in MOVES:
            continue
        dx, dy = MOVES[change]
        c = [detect(frame).centroid for frame in clip]
        steps += [(b[0] - a[0]) * dx + (b[1] - a[1]) * dy for a, b in zip(c, c[1:]) if a is not None and b is not None]
    return float(np.mean(steps)) if steps else float("nan")


def with_motion_term(loss_fn, weight: float):
    """``loss_fn`` plus ``weight`` x ``loss_fn`` of the frame-to-frame differences (clips (N, C, F, h, w)): the same
    per-clip Min-SNR weighting, applied to the part of the error (pred - noise) that changes across frames."""

    def loss(pred, noise, alpha_bar, snr_gamma: float):
        def step(x):
            return x[:, :, 1:] - x[:, :, :-1]

        return loss_fn(pred, noise, alpha_bar, snr_gamma) + weight * loss_fn(step(pred), step(noise), alpha_bar,
                                                                             snr_gamma)

    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--base", default="{}", help="JSON overrides of params.video_base")
    ap.add_argument("--web-world", default=None, help="JSON overrides of params.video_world for the web corpus")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--motion-loss", type=float, default=0.0, help="weight of the frame-difference error term")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from seppo.config import load_params
    from seppo.evaluation.video_generate import load_video_prompts
    from seppo.models.pipeline import load_pipeline
    from seppo.models.recipe import recipe_frame_correlation
    from seppo.models.video_pipeline import generate_clips
    from seppo.models.video_pretrain import pretrain_motion_adapter
    from seppo.world.video import clip_utility
    from seppo.world.video_stage import run_video_world

    if args.motion_loss > 0:
        import seppo.models.video_pretrain as vp

        vp.pretrain_loss = with_motion_term(vp.pretrain_loss, args.motion_loss)
    params = load_params(args.params)
    base_over, world_over = json.loads(args.base), json.loads(args.web_world) if args.web_world else None
    cfg = params.video_base.model_copy(update=base_over)
    web = Path("data/video_world/web")
    if world_over is not None:
        world = args.out / "world"
        if not (world / "web" / "clips.npy").exists():
            run_video_world(params.video_world.model_copy(update=world_over), world)
        web = world / "web"
    model = args.out / "model"
    t0 = time.perf_counter()
    summary = {}
    if not (model / "model_index.json").exists():
        summary = pretrain_motion_adapter(cfg, Path("models/base"), web, model)
        summary.pop("log")
        summary["web_clips"] = summary.pop("clips")
    t1 = time.perf_counter()
    v = params.video
    prompts = load_video_prompts(v)
    rows = [(p, s) for s in v.eval_seeds for p in prompts.prompt]
    clips = generate_clips(load_pipeline(model), [r[0] for r in rows], [r[1] for r in rows], v.sampling, v.frames,
                           v.batch_size, frame_corr=recipe_frame_correlation(model))
    us = [clip_utility(c, p) for c, (p, _) in zip(clips, rows)]
    result = {**summary, "out": str(args.out), "video_base": base_over, "video_world": world_over,
              "motion_loss": args.motion_loss,
              "utility": round(float(np.mean([u.utility for u in us])), 4),
              **{k: round(float(np.mean([u.parts[k] for u in us])), 3) for k in us[0].parts},
              "moving_step_px": round(moving_step(clips, [r[0] for r in rows]), 3),
              "clips": len(us), "sampling": v.sampling.model_dump(), "threads": args.threads,
              "train_s": round(t1 - t0), "clips_s": round(time.perf_counter() - t1)}
    np.save(args.out / "eval_clips.npy", clips)
    print(json.dumps(result), flush=True)
    with open(args.out.parent / "recipes.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
