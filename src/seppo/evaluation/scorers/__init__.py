"""Scorers by name (registry); importing this package registers all of them (no weights loaded)."""

from . import clip_family, ground_truth, hps, imagereward  # noqa: F401  (registration)
from .base import (  # noqa: F401  (the package's public interface)
    REGISTRY,
    MissingWeights,
    Scorer,
    build_scorers,
    built_here,
    local_weight_paths,
    resolve,
    weight_keys,
)
