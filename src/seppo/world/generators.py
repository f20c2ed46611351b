"""Simulated text-to-image generators of varying quality, and a simulated annotator.

A generator may render a different scene than the caption asks for (attribute errors) and adds
image defects. The annotator sees the truth (what was asked, what was drawn, how bad the defects
are), forms a true utility on the same scale as ``utility.utility`` and prefers the better image
with logistic noise, sometimes calling a tie: like a human on Pick-a-Pic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Defects, InfeasibleScene, render
from .scene import ATTRIBUTES, POSITIONS, Scene, values_of
from .utility import FIDELITY_WEIGHT


@dataclass(frozen=True)
class SimGenerator:
    """Per-image probabilities of each kind of mistake."""

    name: str
    attr_error: float  # per attribute, P(drawn value differs from the caption's)
    blur: float
    noise: float
    speckle: float
    bleed: float
    offcanvas: float
    jpeg: float

    def defects(self, rng: np.random.Generator) -> Defects:
        u = rng.random(7)
        return Defects(
            blur_sigma=float(rng.uniform(0.7, 1.6)) if u[0] < self.blur else 0.0,
            noise_std=float(rng.uniform(6.0, 25.0)) if u[1] < self.noise else 0.0,
            speckles=int(rng.integers(1, 5)) if u[2] < self.speckle else 0,
            bleed_px=int(rng.integers(1, 3)) if u[3] < self.bleed else 0,
            offcanvas=bool(u[4] < self.offcanvas),
            jpeg_quality=int(rng.integers(10, 40)) if u[5] < self.jpeg else None,
        )

    def drawn_scene(self, scene: Scene, rng: np.random.Generator) -> Scene:
        shown = scene
        for attribute in ATTRIBUTES:
            if rng.random() >= self.attr_error:
                continue
            current = getattr(scene, attribute)
            if attribute == "position":
                if current is None:
                    continue  # the caption does not constrain it
                options = [p for p in POSITIONS if p is not None and p != current]
            else:
                options = [v for v in values_of(attribute) if v != current]
            shown = shown.with_value(attribute, options[rng.integers(len(options))])
        return shown

    def generate(
        self, scene: Scene, image_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, Scene, Defects]:
        """One image for ``scene``: (pixels, the scene actually drawn, its defects)."""
        for _ in range(20):
            shown, defects = self.drawn_scene(scene, rng), self.defects(rng)
            try:
                return render(shown, image_size, rng, defects), shown, defects
            except InfeasibleScene:
                continue
        defects = self.defects(rng)
        return render(scene, image_size, rng, defects), scene, defects


GENERATORS: tuple[SimGenerator, ...] = (
    SimGenerator("shapeland-xl", 0.04, 0.08, 0.08, 0.05, 0.05, 0.02, 0.05),
    SimGenerator("shapeland-v2", 0.10, 0.25, 0.20, 0.15, 0.10, 0.05, 0.10),
    SimGenerator("shapeland-v1", 0.20, 0.45, 0.35, 0.30, 0.20, 0.08, 0.20),
    SimGenerator("shapeland-draft", 0.35, 0.70, 0.50, 0.50, 0.35, 0.12, 0.30),
)
GENERATOR_BY_NAME = {g.name: g for g in GENERATORS}

# The two ends of the skill scale of the preference set's generators (``skill_generator``):
# skill 1 draws like shapeland-xl, skill 0 is a weak model (most attributes wrong, most images
# defective). Measured on Shapeland's pixel utility (docs/world.md): the embedded base model
# theta_0 draws about like skill 0.35.
_SKILL_0 = (0.75, 0.80, 0.60, 0.60, 0.50, 0.20, 0.40)
_SKILL_1 = (0.04, 0.08, 0.08, 0.05, 0.05, 0.02, 0.05)


def skill_generator(skill: float) -> SimGenerator:
    """A generator whose error and defect rates interpolate linearly between skill 0 and skill 1."""
    if not 0.0 <= skill <= 1.0:
        raise ValueError(f"generator skill must lie in [0, 1], got {skill}")
    rates = [lo + skill * (hi - lo) for lo, hi in zip(_SKILL_0, _SKILL_1, strict=True)]
    return SimGenerator(f"shapeland-s{round(100 * skill):03d}", *rates)


def true_utility(asked: Scene, shown: Scene, defects: Defects) -> float:
    """What the simulated annotator perceives: same weights as the pixel-based utility."""
    attrs = [a for a in ATTRIBUTES if not (a == "position" and asked.position is None)]
    fidelity = float(np.mean([getattr(asked, a) == getattr(shown, a) for a in attrs]))
    return FIDELITY_WEIGHT * fidelity + (1.0 - FIDELITY_WEIGHT) * (1.0 - defects.severity)


@dataclass(frozen=True)
class Annotator:
    """Prefers the higher true utility with logistic noise; near-equal pairs are sometimes ties."""

    temperature: float
    tie_margin: float
    tie_prob: float

    def label(self, u0: float, u1: float, rng: np.random.Generator) -> tuple[float, float]:
        """(label_0, label_1): (1, 0), (0, 1) or (0.5, 0.5)."""
        draw_tie, draw_pref = rng.random(2)
        if abs(u0 - u1) < self.tie_margin and draw_tie < self.tie_prob:
            return 0.5, 0.5
        p0 = 1.0 / (1.0 + np.exp(-(u0 - u1) / self.temperature))
        return (1.0, 0.0) if draw_pref < p0 else (0.0, 1.0)
