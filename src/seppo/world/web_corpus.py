"""The noisy "web" corpus the embedded base model is pretrained on.

Like a scraped image-text corpus: images of mixed quality (drawn with the simulated generators'
defects) and alt-text style captions that are sometimes partial or name a wrong attribute. The
base model inherits both flaws, which leaves room for preference alignment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .generators import GENERATOR_BY_NAME
from .render import InfeasibleScene, render
from .scene import COUNT_WORDS, POSITION_PHRASES, Scene, wrong_value

# Share of the corpus drawn from each generator's defect profile.
QUALITY_MIX = {"shapeland-xl": 0.15, "shapeland-v2": 0.30, "shapeland-v1": 0.35, "shapeland-draft": 0.20}
PREFIXES = ("", "", "a picture of ", "an image of ", "clipart: ", "photo of ")
OMITTABLE = ("count", "size", "colour", "position", "background")


def caption_text(scene: Scene, omit: frozenset[str] = frozenset(), prefix: str = "") -> str:
    """A caption of ``scene`` leaving out the attributes in ``omit`` (the shape is always named)."""
    noun = scene.shape if scene.count == 1 else scene.shape + "s"
    parts = []
    if "count" not in omit:
        parts.append(COUNT_WORDS[scene.count])
    elif scene.count == 1:
        parts.append("a")
    if "size" not in omit:
        parts.append(scene.size)
    if "colour" not in omit:
        parts.append(scene.colour)
    parts.append(noun)
    if scene.position is not None and "position" not in omit:
        parts.append(POSITION_PHRASES[scene.position])
    if "background" not in omit:
        parts.append(f"on a {scene.background} background")
    return prefix + " ".join(parts)


def make_web_corpus(
    n: int,
    scenes: list[Scene],
    image_size: int,
    partial_rate: float,
    wrong_rate: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, pd.DataFrame]:
    """(images uint8 (n, H, W, 3), table with caption, kind, generator, true scene caption)."""
    names = list(QUALITY_MIX)
    weights = np.array([QUALITY_MIX[k] for k in names])
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    records = []
    for i in range(n):
        while True:
            scene = scenes[rng.integers(len(scenes))]
            gen = GENERATOR_BY_NAME[names[rng.choice(len(names), p=weights)]]
            try:
                images[i] = render(scene, image_size, rng, gen.defects(rng))
                break
            except InfeasibleScene:
                continue
        kind, said = "exact", scene
        omit: frozenset[str] = frozenset()
        draw = rng.random()
        if draw < wrong_rate:
            kind = "wrong"
            attribute = ["shape", "colour", "count", "size", "background"][rng.integers(5)]
            said = wrong_value(scene, attribute, rng)
        elif draw < wrong_rate + partial_rate:
            kind = "partial"
            k = int(rng.integers(1, 4))
            omit = frozenset(rng.choice(OMITTABLE, size=k, replace=False).tolist())
        prefix = PREFIXES[rng.integers(len(PREFIXES))]
        records.append(
            {
                "caption": caption_text(said, omit, prefix),
                "kind": kind,
                "generator": gen.name,
                "scene": scene.caption(),
            }
        )
    return images, pd.DataFrame.from_records(records)
