"""Process start-up of every stage command: what a DVC stage pays before its first line of work.

    python benchmarks/bench_startup.py [--repeats 5] [--only train --only cache]

Every DVC stage is a new Python process. A stage's start-up here is the wall time of a fresh
interpreter that imports what the stage's code imports: the seppo modules its command reaches
(planning/code_deps.py, the same closure that makes its dvc.yaml code deps) and every import
statement in them, at module level or inside a function (the libraries a stage loads lazily, e.g.
torch inside run_cache), then exits. It is an upper bound of the real start-up (a function-level
import on a branch the stage does not take is counted) and runs no stage work, so it is cheap and
needs no data. Printed: each stage's median over --repeats processes (run in alternation with the
two baselines, `python -c pass` and `python -c "import torch"`), its ratio to `import torch`, and
the total over the stages of the default pipeline as dvc.yaml plans it (a round's stages once per
round). Numbers are this machine's: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seppo.planning.code_deps import closure, command_modules, modules  # noqa: E402
from seppo.planning.table import STAGES  # noqa: E402


def imports_of(stage: str) -> list[str]:
    """Every module the stage's code imports: its seppo closure, then each third-party import statement in it."""
    mods = modules()
    seppo_mods = closure(command_modules(stage))
    third: set[str] = set()
    for m in seppo_mods:
        for node in ast.walk(ast.parse(mods[m].read_text())):
            if isinstance(node, ast.Import):
                third |= {a.name for a in node.names if not a.name.startswith("seppo")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if not node.module.startswith("seppo") and node.module != "__future__":
                    third.add(node.module)
    return ["seppo.cli", *seppo_mods, *sorted(third)]


def _script(names: list[str]) -> str:
    # a module that is not installed (an optional extra) is skipped, as the stage would not reach it
    return ("import importlib\nfor n in %r:\n    try:\n        importlib.import_module(n)\n"
            "    except ImportError:\n        pass\n" % (names,))


def _wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stage_counts() -> dict[str, int]:
    """How many stages of each kind the default pipeline runs (dvc.yaml: select_1 .. select_K count as select)."""
    counts: dict[str, int] = {}
    for name in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        kind = next((s for s in sorted(STAGES, key=len, reverse=True)
                     if name == s or name.startswith(s + "_") or (s == "eval_generate" and name.startswith("eval_"))),
                    None)
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", action="append", default=[], help="stages to measure (default: all)")
    args = ap.parse_args()
    stages = args.only or [s for s in STAGES]
    # the floor of a stage that builds a diffusers UNet: the UNet's own module, and the three imports that module
    # forces through diffusers' module-level imports (torch; torch._dynamo via diffusers.utils.torch_utils; peft via
    # diffusers.hooks.group_offloading -> hooks.layerwise_casting -> peft.helpers)
    codes = {"(python -c pass)": "pass", "(import torch)": "import torch",
             "(torch+_dynamo+peft)": "import torch, torch._dynamo, peft.helpers",
             "(diffusers UNet module)": "import diffusers.models.unets.unet_2d_condition"}
    codes |= {s: _script(imports_of(s)) for s in stages}
    times: dict[str, list[float]] = {k: [] for k in codes}
    for _ in range(args.repeats):  # in alternation: a drift of the machine hits every row alike
        for k, code in codes.items():
            times[k].append(_wall(code))
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_s = med["(import torch)"]
    print(f"start-up: median of {args.repeats} fresh processes each (python {sys.version.split()[0]})")
    print(f"{'stage':24s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'/ import torch':>15s}")
    for k in codes:
        v = times[k]
        print(f"{k:24s} {med[k]:9.2f} {min(v):7.2f} {max(v):7.2f} {med[k] / torch_s:15.2f}")
    counts = stage_counts()
    total = sum(med[s] * n for s, n in counts.items() if s in med)
    missing = sorted(s for s in counts if s not in med)
    print(f"default pipeline (dvc.yaml, {sum(counts.values())} stages): {total:.1f} s of start-up"
          + (f" (not measured: {', '.join(missing)})" if missing else ""))


if __name__ == "__main__":
    main()
