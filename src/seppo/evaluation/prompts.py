"""Prompt sets: the embedded world's held-out prompts, local files, or a `datasets` source.

Every prompt gets a stable id (from the source, or its row number), used to pair images across
checkpoints and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import EvaluateConfig
from .. import layout as L


class PromptSetError(ValueError):
    pass


def load_prompts(cfg: EvaluateConfig, world_prompts: Path = Path(L.WORLD_PROMPTS)) -> pd.DataFrame:
    """A (prompt_id, prompt) table, first ``max_prompts`` rows."""
    src = cfg.prompts
    if src == "embedded":
        t = pd.read_parquet(world_prompts)
        t = t[t["split"] == "eval"].rename(columns={"caption": "prompt"})[["prompt_id", "prompt"]]
    else:
        p = Path(src)
        col = cfg.prompt_column
        if p.is_file():
            suf = p.suffix.lower()
            if suf == ".txt":
                lines = [ln.strip() for ln in p.read_text().splitlines()]
                t = pd.DataFrame({"prompt": [ln for ln in lines if ln]})
            elif suf in (".csv", ".tsv"):
                t = pd.read_csv(p, sep="\t" if suf == ".tsv" else ",")
            elif suf == ".parquet":
                t = pd.read_parquet(p)
            elif suf == ".jsonl":
                t = pd.read_json(p, lines=True)
            elif suf == ".json":
                data = json.loads(p.read_text())
                t = pd.DataFrame({"prompt": data}) if data and isinstance(data[0], str) else pd.DataFrame(data)
            else:
                raise PromptSetError(f"evaluate.prompts={src}: unsupported file type {suf}")
        else:
            import datasets

            try:
                ds = datasets.load_from_disk(src) if p.is_dir() else datasets.load_dataset(src, split=cfg.split)
                if isinstance(ds, datasets.DatasetDict):
                    ds = ds[cfg.split or "test"]
            except Exception as err:  # noqa: BLE001
                raise PromptSetError(
                    f"evaluate.prompts={src!r}: not a file, folder or reachable dataset ({type(err).__name__}: "
                    f"{err}). Set evaluate.prompts to a local copy.") from None
            t = ds.select_columns([col]).to_pandas()
        if "prompt" not in t.columns:
            if col not in t.columns:
                raise PromptSetError(f"evaluate.prompts={src}: no column {col!r} (have {list(t.columns)}); "
                                     "set evaluate.prompt_column")
            t = t.rename(columns={col: "prompt"})
        t = t[t["prompt"].astype(str).str.strip() != ""].drop_duplicates("prompt")
        t = t.assign(prompt_id=[f"p{i:05d}" for i in range(len(t))])[["prompt_id", "prompt"]]
    if cfg.max_prompts:
        t = t.head(cfg.max_prompts)
    return t.reset_index(drop=True)
