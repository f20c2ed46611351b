"""Params overrides from the UI, checked against seppo.config before anything runs.

An override is ``{"section.key": value}``; DVC's Hydra prefixes are accepted as a user would type them
from DVC's own error hint (``+key`` adds, ``++key`` forces, ``~key`` removes), but whatever the prefix,
the resulting params must validate against the project's pydantic models, so ``+train.lrr`` is an
unknown key like ``train.lrr``. A failure raises BadOverrides naming each dotted key and what is allowed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from flows.runner import BadOverrides

_KEY = re.compile(r"^(\+\+|\+|~)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_EXP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def apply(data: dict, overrides: dict[str, Any]) -> dict:
    """params with the overrides applied (a deep copy; the input is left alone)."""
    out = copy.deepcopy(data)
    for raw, value in overrides.items():
        m = _KEY.match(str(raw))
        if not m:
            raise BadOverrides(f"override key {raw!r}: expected a dotted params key such as 'train.lr'")
        prefix, key = m.groups()
        *parents, leaf = key.split(".")
        cur = out
        for i, part in enumerate(parents):
            nxt = cur.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise BadOverrides(f"override {key}: {'.'.join(parents[:i + 1])} is a value, not a section")
            cur = nxt
        if prefix == "~":
            cur.pop(leaf, None)
        else:
            cur[leaf] = value
    return out


def validate(overrides: dict[str, Any] | None, params_path: Path) -> list[str]:
    """Check the overrides against params.yaml + seppo.config; return DVC's ``-S`` arguments.

    Raises BadOverrides (never retried) with the config error's text, which names each bad key
    (``train.criterion``) with its allowed values or, for an unknown key, the keys allowed there.
    """
    from seppo.config import ConfigError, parse_params

    if not overrides:
        return []
    if not isinstance(overrides, dict):
        raise BadOverrides(f"overrides must be a mapping of params keys to values, got {type(overrides).__name__}")
    data = yaml.safe_load(params_path.read_text()) or {}
    try:
        parse_params(apply(data, overrides), f"{params_path.name} with overrides {json.dumps(overrides)}")
    except ConfigError as err:
        raise BadOverrides(str(err)) from None
    args = []
    for raw, value in sorted(overrides.items()):
        prefix, key = _KEY.match(raw).groups()  # type: ignore[union-attr]
        if prefix == "~":
            args.append(f"~{key}")
            continue
        # Validated above, so the key is one the models know. DVC (Hydra) wants `+` only for a key
        # params.yaml lacks, and refuses it for one it has ("An item is already at ..."), so the
        # prefix comes from params.yaml, not from what the user typed. JSON keeps types and quotes.
        args.append(f"{'' if _present(data, key) else '+'}{key}={json.dumps(value)}")
    return args


def _present(data: dict, key: str) -> bool:
    cur: Any = data
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def check_experiment_name(name: str) -> str:
    """DVC experiment names are git ref components; also used (lower-cased) in artifact keys."""
    if not _EXP_NAME.match(name or ""):
        raise BadOverrides(f"experiment_name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name
