"""Shared by the step benchmarks: a timing helper, and policy and reference UNets: the tiny SD UNet of `models/base` if the
pipeline has run, else a random one of the same architecture (weights do not change the timing)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def policy_and_reference(model: Path):
    """(policy in train mode, frozen reference, training noise scheduler)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from seppo.models import components

    if (model / "unet").exists():
        def load():
            return UNet2DConditionModel.from_pretrained(model, subfolder="unet")
        sched = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    else:
        def load():
            return components.unet([32, 64], 1, 8, 64, 0)
        sched = components.train_scheduler()
    return load().train(), load().eval().requires_grad_(False), sched
