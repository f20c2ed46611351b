"""Scorers by name (registry); importing this package registers all of them (no weights loaded)."""

from . import clip_family, ground_truth, hps, imagereward  # noqa: F401  (registration)
from .base import REGISTRY, MissingWeights, Scorer, build_scorers, resolve  # noqa: F401
