"""Params edited before validation: `key=value` overrides (as `dvc exp run -S`) and preset files.

Both work on the plain YAML mapping and hand the result to ``config.parse_params``, so an edited
params file fails exactly like a hand-written one (dotted key, allowed values, nearest key).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, Params, parse_params
from .io_utils import atomic_path

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def read_mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def apply_overrides(data: dict, items: list[str]) -> dict:
    """A copy of ``data`` with each ``section.key=value`` set (value parsed as YAML: 3e-5, true, [0, 1])."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected section.key=value (e.g. train.lr=3e-5)")
        cur = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            nxt = cur.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {part} is a value, not a section")
            cur = nxt
        cur[leaf] = _value(value)
    return out


def _value(text: str) -> Any:
    """YAML scalar or flow value; 3e-5 is a number (YAML 1.2, as `dvc exp run -S` reads it), not a string."""
    v = yaml.safe_load(text)
    if isinstance(v, str) and _FLOAT.fullmatch(v.strip()):
        return float(v)
    return v


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base``: nested sections key by key, other values replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def load_with_overrides(path: Path, items: list[str]) -> Params:
    data = apply_overrides(read_mapping(path), items)
    return parse_params(data, f"{path} with {', '.join(items)}")


def apply_preset(params_path: Path, preset: Path) -> Params:
    """Merge ``preset`` into ``params_path``: validated first, then written atomically."""
    data: dict[str, Any] = merge(read_mapping(params_path), read_mapping(preset))
    params = parse_params(data, f"{params_path} + {preset}")
    from .planning.dvc import render

    render(params)  # plannable before params.yaml is touched (e.g. a Hub id's pinned revision: SourceError)
    with atomic_path(Path(params_path)) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    return params
