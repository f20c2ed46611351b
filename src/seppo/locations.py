"""Where an input comes from: a Hub id or a local path, and which weights this pipeline builds itself.

Pure string rules (nothing is read or downloaded), shared by the planner (a local input is a DVC
dep, a Hub id is pinned by its revision), the data sources, the scorers and the downloader.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class SourceError(ValueError):
    """ingest.source cannot be used as given; the message says why and which param to change."""


def is_hub_id(source: str) -> bool:
    """`owner/name` that is not on disk: a Hub dataset id."""
    return (not Path(source).exists() and source.count("/") == 1 and not source.startswith((".", "/", "~"))
            and not glob.has_magic(source))


def check_hub_revision(source: str, revision: str | None) -> None:
    """A Hub dataset is read at a pinned commit, never at a moving branch."""
    if revision is None or not _COMMIT.match(revision):
        raise SourceError(
            f"ingest.source={source!r} is not on disk, so it is read as a Hub dataset id: set "
            "ingest.revision to a commit sha (40 hex characters) so the data is pinned and recorded "
            f"in dvc.lock (got ingest.revision={revision!r}); or fix the path if a local folder was meant."
        )


# The evaluate.models keys each scorer reads, its main weights first (for DVC deps and the report).
WEIGHT_KEYS: dict[str, list[str]] = {
    "pickscore_x100": ["pickscore_model", "pickscore_processor"],
    "clip_l14_x100": ["clip_model"],
    "aesthetic_laion": ["aesthetic_head", "clip_model"],
    "hps_v20_x100": ["hps_v20_checkpoint"],
    "hps_v21_x100": ["hps_v21_checkpoint"],
    "imagereward": ["imagereward_checkpoint", "imagereward_med_config", "imagereward_tokenizer"],
}


def built_here(value: str | None) -> bool:
    """Weights under models/ are made by a stage of this pipeline (e.g. models/pickscore)."""
    return bool(value) and str(value).startswith("models/")


def weight_keys(name: str) -> list[str]:
    """The evaluate.models keys scorer ``name`` reads, its main weights first ([] for pixel scorers)."""
    return list(WEIGHT_KEYS.get(name, []))


def local_weight_paths(names: list[str], models: dict[str, str | None]) -> list[str]:
    """The weights of scorers ``names`` that a stage of this pipeline builds (DVC deps of evaluate)."""
    paths: list[str] = []
    for scorer in names:
        for key in weight_keys(scorer):
            if built_here(models.get(key)) and models[key] not in paths:
                paths.append(models[key])
    return paths
