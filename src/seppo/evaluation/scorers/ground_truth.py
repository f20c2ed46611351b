"""The embedded world's ground-truth utility as a scorer (never used by training)."""

from __future__ import annotations

import numpy as np

from .base import register


class ShapelandUtility:
    name = "shapeland_utility"  # in [0, 1]: 0.7 prompt fidelity + 0.3 image quality, from pixels

    def score(self, images, prompts) -> np.ndarray:
        from ...world.scene import CaptionParseError
        from ...world.utility import utility

        try:
            return np.array([utility(np.asarray(im), p).utility for im, p in zip(images, prompts)])
        except CaptionParseError as err:
            raise ValueError(f"shapeland_utility scores only the embedded world's captions: {err}") from None


@register("shapeland_utility")
def _build(name, models, device, batch_size, shared):
    return ShapelandUtility()
