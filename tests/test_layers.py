"""The import layers of docs/architecture.md: imports point down only, and no package imports one above it.

Read from the source with ast (imports inside functions count too: they are what a stage's process loads).
A new package or top-level module must be placed in LAYERS (and in the docs' diagram) before it can land.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "seppo"

# top to bottom; a unit is a subpackage of seppo or a top-level module (without .py)
LAYERS = [
    ("entry", {"cli"}),
    ("stages", {"stages"}),
    ("reports", {"reports"}),
    ("orchestration", {"study", "params_edit", "downloads"}),
    ("training", {"training"}),
    ("evaluation", {"evaluation"}),
    ("data", {"data"}),
    ("domain", {"models", "world", "imaging"}),
    ("planning", {"planning"}),
    ("config", {"config"}),
    ("base", {"layout", "locations", "io_utils", "seeding", "distributed", "progress", "optim", "webassets",
              "__init__"}),
]
FLOOR = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path, located: Path | None = None) -> set[str]:
    """The seppo units a module imports (absolute `seppo.x` or relative, resolved from ``located``)."""
    pkg = list((located or path).relative_to(SRC).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("seppo.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("seppo."):
                    out.add(node.module.split(".")[1])
                elif node.module == "seppo":
                    out |= {a.name for a in node.names}
                continue
            base = pkg[: len(pkg) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [])
            out |= {parts[0]} if parts else {a.name for a in node.names}
    return out


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py")}
    assert units - set(FLOOR) == set(), "place these in LAYERS and in docs/architecture.md's diagram"


def test_imports_point_down_only():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        if "webassets" in path.parts and path.name not in ("__init__.py", "offline.py"):
            continue  # vendored assets
        here = _unit(path)
        for target in _imports(path) - {here}:
            if target in FLOOR and FLOOR[target] <= FLOOR[here]:
                upward.append(f"{path.relative_to(ROOT)}: {here} ({LAYERS[FLOOR[here]][0]}) imports {target} "
                              f"({LAYERS[FLOOR[target]][0]})")
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """A data-layer module importing training (above it), relatively or absolutely, inside a function, is seen."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..training import plan\n    import seppo.reports.build\n")
    found = _imports(probe, located=SRC / "data" / "probe.py")
    assert found == {"training", "reports"}
    assert all(FLOOR[t] < FLOOR["data"] for t in found)  # both would be reported as upward
