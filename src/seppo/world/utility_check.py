"""Held-out accuracy of the ground-truth utility's detectors, measured on fresh renders.

The renders' attributes and defects are known, so each detector is scored against the truth:
attribute accuracy on in-frame renders, the quality score's ability to tell clean from degraded
images (AUC), how often a wrong caption passes every check, and the rank correlation between
the pixel-based utility and the simulation's true utility.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .generators import GENERATORS, true_utility
from .scene import ATTRIBUTES, Scene, wrong_value
from .utility import fidelity_checks, utility


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def check_utility(scenes: list[Scene], n: int, image_size: int, rng: np.random.Generator) -> dict:
    correct = {a: [] for a in ATTRIBUTES}
    correct_clean = {a: [] for a in ATTRIBUTES}
    q_clean, q_degraded, u_pix, u_true, mismatch_pass = [], [], [], [], []
    for _ in range(n):
        scene = scenes[rng.integers(len(scenes))]
        gen = GENERATORS[rng.integers(len(GENERATORS))]
        img, shown, defects = gen.generate(scene, image_size, rng)
        res = utility(img, scene)
        u_pix.append(res.utility)
        u_true.append(true_utility(scene, shown, defects))
        if defects.severity == 0.0:
            q_clean.append(res.quality)
        elif defects.severity >= 0.3:
            q_degraded.append(res.quality)
        if not defects.offcanvas:
            # Attribute truth: checks against the scene actually drawn must all pass. Blur and
            # JPEG blocking legitimately erase small shapes, so those are counted separately.
            checks = fidelity_checks(res.detection, shown, image_size).items()
            target = correct_clean if defects.severity == 0.0 else correct
            for attribute, ok in checks:
                target[attribute].append(ok)
        other = wrong_value(scene, ["shape", "colour", "count", "size", "background"][rng.integers(5)], rng)
        mismatch_pass.append(all(fidelity_checks(res.detection, other, image_size).values()))
    rho = stats.spearmanr(u_pix, u_true).statistic
    return {
        "renders": n,
        "attribute_accuracy_clean": {a: float(np.mean(v)) for a, v in correct_clean.items() if v},
        "attribute_renders_clean": len(correct_clean["shape"]),
        "attribute_accuracy_degraded": {a: float(np.mean(v)) for a, v in correct.items() if v},
        "attribute_renders_degraded": len(correct["shape"]),
        "quality_auc_clean_vs_degraded": _auc(np.array(q_clean), np.array(q_degraded)),
        "wrong_caption_full_pass_rate": float(np.mean(mismatch_pass)),
        "spearman_pixel_vs_true_utility": float(rho),
    }
