"""`seppo download-models`: fill the local Hugging Face cache with every Hub id the params name.

Never run by the pipeline (stages read weights from local paths or the local cache only). Local
paths and weights that a stage builds (models/...) are skipped. Tokens come from the environment
(HF_TOKEN) through huggingface-hub and are never printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import Params
from .locations import built_here

NOT_WEIGHTS = {"hps_architecture", "imagereward_vit", "imagereward_image_size"}


def wanted(params: Params, scorers_only: bool = False) -> list[tuple[str, str]]:
    """(param key, value) of every Hub-id-looking weight reference, scorers first."""
    out = [(f"evaluate.models.{k}", v) for k, v in params.evaluate.models.model_dump().items()
           if k not in NOT_WEIGHTS and isinstance(v, str) and "/" in v]
    if not scorers_only and params.base_model.source != "embedded":
        out.append(("base_model.source", params.base_model.source))
    return out


def download_models(params: Params, scorers_only: bool = False, echo: Callable[[str], None] = print) -> list[str]:
    """Download what ``wanted`` lists; one line per key; the local paths of what was fetched."""
    from huggingface_hub import hf_hub_download, snapshot_download

    fetched = []
    for key, value in wanted(params, scorers_only):
        if built_here(value):  # e.g. models/pickscore: made by the pipeline, not a Hub repo
            echo(f"{key}: built by the pipeline, skipped")
            continue
        if Path(value.split("::")[0]).exists():
            echo(f"{key}: local path, skipped")
            continue
        repo, _, fname = value.partition("::")
        revision = params.base_model.revision if key == "base_model.source" else None
        path = hf_hub_download(repo, fname) if fname else snapshot_download(repo, revision=revision)
        echo(f"{key}: {value} -> {path}")
        fetched.append(str(path))
    return fetched
