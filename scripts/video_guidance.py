"""The video base's sampler guidance, chosen on captions the evaluation never sees (docs/video.md "The video base:
what was tried next").

    python scripts/video_guidance.py [--model models/video_base] [--guidance 7.5 5 3 2] [--on train|eval]

--on train (the default): 32 training captions of the video world (every 6th of the 200 distinct ones, sorted;
disjoint from the evaluation prompts, asserted) x params.video.eval_seeds; --on eval: the evaluation's own prompts and
seeds, exactly as `seppo video-evaluate` generates them. The sampler, steps, frames and batch size are
params.video's; only the guidance changes. Prints one JSON line per guidance: the mean clip utility with its 95%
bootstrap CI over captions, its parts, and the difference to the first guidance with its CI (paired on caption and
seed). Single thread by default. A single model and a single sampling of it: the CIs are over captions only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def captions_for(on: str, params) -> list[str]:
    import pandas as pd

    from seppo.evaluation.video_generate import load_video_prompts

    v = params.video
    if on == "eval":
        return load_video_prompts(v).prompt.tolist()
    prompts = pd.read_parquet(v.prompts)
    held_out = set(prompts[prompts.split == "eval"].caption)
    caps = sorted(pd.read_csv(Path(v.source) / "captions.csv").caption.unique())[::6][: v.eval_prompts]
    if set(caps) & held_out:
        raise ValueError(f"{v.source}: training captions overlap the evaluation prompts of {v.prompts}")
    return caps


def paired_ci(d: np.ndarray, n_captions: int, seed: int = 0, n_boot: int = 4000) -> tuple[float, float, float]:
    """Mean of d (seed-major, captions inner) and the 95% bootstrap CI resampling captions (seeds averaged first)."""
    from seppo.evaluation.stats import bootstrap_mean

    return bootstrap_mean(np.asarray(d).reshape(-1, n_captions).T, n_boot, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/video_base"))
    ap.add_argument("--guidance", type=float, nargs="+", default=[7.5, 5.0, 3.0, 2.0])
    ap.add_argument("--on", choices=["train", "eval"], default="train")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from seppo.config import load_params
    from seppo.models.pipeline import load_pipeline
    from seppo.models.recipe import recipe_frame_correlation
    from seppo.models.video_pipeline import generate_clips
    from seppo.world.video import clip_utility

    params = load_params(args.params)
    v = params.video
    caps = captions_for(args.on, params)
    rows = [(c, s) for s in v.eval_seeds for c in caps]
    pipe, frame_corr = load_pipeline(args.model), recipe_frame_correlation(args.model)
    first = None
    for g in args.guidance:
        clips = generate_clips(pipe, [r[0] for r in rows], [r[1] for r in rows],
                               v.sampling.model_copy(update={"guidance": g}), v.frames, v.batch_size,
                               frame_corr=frame_corr)
        us = [clip_utility(c, cap) for c, (cap, _) in zip(clips, rows)]
        u = np.array([x.utility for x in us])
        first = u if first is None else first
        m, lo, hi = paired_ci(u - first, len(caps))
        print(json.dumps({"model": str(args.model), "on": args.on, "guidance": g, "clips": len(u),
                          "utility": round(float(u.mean()), 4),
                          "utility_ci95": [round(x, 4) for x in paired_ci(u, len(caps))[1:]],
                          **{k: round(float(np.mean([x.parts[k] for x in us])), 3) for k in us[0].parts},
                          f"minus_guidance_{args.guidance[0]}": [round(m, 4), round(lo, 4), round(hi, 4)],
                          "sampling": {**v.sampling.model_dump(), "guidance": g}}), flush=True)


if __name__ == "__main__":
    main()
