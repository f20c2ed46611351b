"""The default pipeline on more training seeds: how far its one-run numbers move (README "Measured").

    python scripts/default_seeds.py --seeds 0 1 2 [--metric shapeland_utility]

Seed 0 is read from the workspace (`dvc repro` must be up to date); every other seed runs as a DVC
experiment `default__seed<k>` through the study's own machinery (`dvc exp run --temp ... -S ++train.seed=<k>
evaluate`: the shared stages, theta_0 included, come from the cache; the rounds and the evaluation run again),
unless a finished experiment of that name was made with the same params. Prints per-seed means and the
two-level bootstrap CI (seeds x prompts, crossed: the study's statistics) of every checkpoint and of its
paired difference against theta_0.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pandas as pd

from seppo.config import load_params
from seppo.study.records import Run, build_record, effective_hash, per_prompt_matrix
from seppo.study.runner import collect, exp_command, finished_experiment
from seppo.study.stats import paired_difference, two_level_bootstrap

ROOT = Path(".")


def record_of(params, seed: int) -> dict:
    over = {"train.seed": seed}
    run = Run("default", seed, over, effective_hash(params, over))
    if seed == params.train.seed:
        return build_record(run, "default", pd.read_parquet(ROOT / "reports/eval/scores.parquet"), {}, {})
    rev = finished_experiment(ROOT, run)
    if rev is None:
        cmd = exp_command(run, "evaluate")
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        rev = finished_experiment(ROOT, run)
    return collect(ROOT, run, "default", params.train.rounds, rev, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--metric", default="shapeland_utility")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    if params.train.seed not in args.seeds:
        raise SystemExit(f"--seeds must include params.yaml's train.seed ({params.train.seed}): it is the workspace")
    records = [record_of(params, s) for s in args.seeds]
    base = per_prompt_matrix(records, "base", args.metric)[1]
    print(f"{args.metric}: training seeds {args.seeds}, {base.shape[1]} prompts; 95% two-level bootstrap "
          f"(seeds x prompts, crossed), {args.n_boot} resamples")
    for ckpt in records[0]["checkpoints"]:
        x = per_prompt_matrix(records, ckpt, args.metric)[1]
        e = two_level_bootstrap(x, args.n_boot, 0)
        line = f"{ckpt:>9}: {e.mean:.3f} [{e.lo:.3f}, {e.hi:.3f}]  per seed " + " / ".join(f"{m:.3f}" for m in x.mean(1))
        if ckpt != "base":
            d = paired_difference(x, base, args.n_boot, 0)
            line += f"  vs base {d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"
        print(line)


if __name__ == "__main__":
    main()
