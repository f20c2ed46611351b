"""The project modules a stage's code imports, from the import graph (for dvc.yaml's code deps).

Every ``import`` / ``from ... import`` of a ``seppo`` module counts, at module level or inside a
function (a function-local import runs when the stage calls that function), and importing
``seppo.a.b`` runs the packages' ``__init__`` files too. The closure is read from the source
files (ast), so nothing is imported and no weights or data are touched.

Two modules are left out on purpose (``NOT_CODE_DEPS``): they reach a stage's outputs only
through what DVC already tracks, and listing them would re-run the whole pipeline for a
docstring edit.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "seppo"
SRC = Path(__file__).resolve().parents[1]  # src/seppo

NOT_CODE_DEPS = {
    "seppo": "the package's __init__: a docstring and the version string, no stage code",
    "seppo.config": "params reach a stage through DVC's params tracking (params.yaml spells out every "
                    "key, tests/test_stages.py checks it), so config defaults never feed a stage",
}


@lru_cache(maxsize=4)
def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``src``."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return mods[name].name == "__init__.py"


def _base(module: str, level: int, target: str | None, mods: dict[str, Path]) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not _is_package(module, mods):
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def direct_imports(module: str, src: Path = SRC) -> set[str]:
    """The package modules ``module``'s file imports anywhere in its body (and their packages)."""
    mods = modules(src)
    tree = ast.parse(mods[module].read_text(), filename=str(mods[module]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node.level, node.module, mods)
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for name in names:
            for part in _with_parents(name):
                if part in mods:
                    found.add(part)
    found.discard(module)
    return found


def command_modules(command: str, cli: str = "seppo.cli", src: Path = SRC) -> list[str]:
    """The package modules the CLI function ``command`` imports (what the stage's subcommand runs)."""
    mods = modules(src)
    tree = ast.parse(mods[cli].read_text())
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == command), None)
    if fn is None:
        raise KeyError(f"{mods[cli]}: no command function {command!r}")
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.ImportFrom):
            base = _base(cli, node.level, node.module, mods)
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in mods}
    return sorted(m for m in found if m in mods)


def closure(entries: list[str] | tuple[str, ...], src: Path = SRC) -> list[str]:
    """Every package module reachable from ``entries`` through imports (entries included), sorted."""
    mods = modules(src)
    seen: set[str] = set()
    todo = [m for e in entries for m in _with_parents(e) if m in mods]
    unknown = [e for e in entries if e not in mods]
    if unknown:
        raise KeyError(f"no such module under {src}: {unknown}")
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(direct_imports(m, src) - seen)
    return sorted(seen)


def dep_paths(entries: list[str] | tuple[str, ...], src: Path = SRC) -> list[str]:
    """The files of ``closure(entries)`` minus NOT_CODE_DEPS, as paths from the project root (src/seppo/...,
    also when the package runs from an installed copy)."""
    mods = modules(src)
    return ["src/" + mods[m].relative_to(src.parent).as_posix()
            for m in closure(entries, src) if m not in NOT_CODE_DEPS]
