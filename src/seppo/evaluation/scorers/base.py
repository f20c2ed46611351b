"""The scorer interface, the registry, and resolving weights from local paths or the HF cache.

A scorer is built once per evaluation (one model load) and scores images in batches. Its ``name``
carries scale and version (``pickscore_x100``, ``hps_v21_x100``, ...), so a number is never read
on the wrong scale. Weights are never downloaded here: a Hub id is looked up in the local Hugging
Face cache only (`seppo download-models` fills it, when asked); otherwise the error names the
missing file and the param to set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ...locations import WEIGHT_KEYS, built_here, local_weight_paths, weight_keys  # noqa: F401  (re-exported)


class MissingWeights(FileNotFoundError):
    """A scorer's weights are not on disk; the message names the file and the param to set."""


class Scorer(Protocol):
    name: str

    def score(self, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        """Scores of uint8 HxWx3 images against their prompts, one float per image."""


REGISTRY: dict[str, Callable[..., Scorer]] = {}

def register(*names: str):
    def deco(factory):
        for n in names:
            REGISTRY[n] = factory
        return factory

    return deco


def resolve(value: str | None, param: str, required: list[str] | None = None) -> Path:
    """A local folder or file for ``value`` (a path or a Hub id already in the local cache)."""
    if not value:
        raise MissingWeights(f"{param} is not set: point it at a local folder/file or a Hub id")
    p = Path(value)
    if not p.exists() and not value.startswith((".", "/")) and value.count("/") >= 1:
        from huggingface_hub import snapshot_download

        repo, _, fname = value.partition("::")  # "org/repo::file.pt" names one file of a repo
        try:
            folder = Path(snapshot_download(repo, local_files_only=True))
        except Exception as err:  # noqa: BLE001 - not cached / offline
            raise MissingWeights(
                f"{param}={value!r}: not a local path and not in the local Hugging Face cache "
                f"({type(err).__name__}). Run `seppo download-models` with network access, or set "
                f"{param} to a local copy."
            ) from None
        p = folder / fname if fname else folder
    if not p.exists():
        raise MissingWeights(f"{param}={value!r}: {p} does not exist; set {param} to a local copy")
    for name in required or []:
        if p.is_dir() and not (p / name).exists():
            raise MissingWeights(f"{param}={value!r}: {p / name} is missing")
    return p


def build_scorers(names: list[str], models: dict[str, str | None], device: str = "cpu",
                  batch_size: int = 32) -> list[Scorer]:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown scorers {unknown}; known: {sorted(REGISTRY)}")
    shared: dict = {}  # backbones shared between scorers (one load, one preprocessing pass)
    return [REGISTRY[n](n, models, device, batch_size, shared) for n in names]
