"""The caption universe of Shapeland and its deterministic split into train and held-out prompts."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .render import InfeasibleScene, place_objects
from .scene import BACKGROUNDS, COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, Scene


@functools.lru_cache(maxsize=4)
def feasible_scenes(image_size: int) -> list[Scene]:
    """Every attribute combination whose objects fit the image, in a fixed order."""
    out = []
    for shape, colour, count, size, position, bg in itertools.product(
        SHAPES, COLOURS, COUNTS, SIZES, POSITIONS, BACKGROUNDS
    ):
        scene = Scene(shape, colour, count, size, position, bg)
        try:
            place_objects(scene, image_size, np.random.default_rng(0))
        except InfeasibleScene:
            continue
        out.append(scene)
    return out


def split_prompts(
    image_size: int, n_eval: int, n_train: int, seed: int
) -> tuple[list[Scene], list[Scene]]:
    """(eval scenes, train scenes): disjoint, drawn without replacement from the feasible set."""
    scenes = feasible_scenes(image_size)
    if n_eval + n_train > len(scenes):
        raise ValueError(
            f"world.eval_prompts + world.train_prompts = {n_eval + n_train} exceeds the "
            f"{len(scenes)} distinct feasible captions at {image_size}px"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(scenes))
    chosen = [scenes[i] for i in order[: n_eval + n_train]]
    return chosen[:n_eval], chosen[n_eval:]
