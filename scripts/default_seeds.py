"""The default pipeline on more training seeds: how far its one-run numbers move (README "Measured").

    python scripts/default_seeds.py --seeds 0 1 2 [--metric shapeland_utility]

Seed 0 is read from the workspace (`dvc repro` must be up to date); every other seed runs as a DVC
experiment (`dvc exp run --temp --name default__seed<k> -S train.seed=<k>`: the shared stages, theta_0
included, are restored from the cache; the rounds and the evaluation run again) unless an experiment of
that name exists. Prints per-seed means and the two-level bootstrap CI (training seeds, then prompts) of
every checkpoint and of its paired difference against theta_0 (seeds x prompts, crossed: the study's statistics).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from seppo.config import load_params
from seppo.study.stats import paired_difference, two_level_bootstrap

SCORES = "reports/eval/scores.parquet"


def _dvc() -> str:
    cand = Path(sys.executable).parent / "dvc"
    return str(cand) if cand.exists() else "dvc"


def _exp_rev(name: str) -> str | None:
    out = subprocess.run([_dvc(), "exp", "show", "--json", "--no-pager"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dvc exp show failed: {out.stderr}")
    import json

    for base in json.loads(out.stdout or "[]"):
        for exp in base.get("experiments") or []:
            if exp.get("name") == name:
                return exp["revs"][0]["rev"]
    return None


def scores_of(seed: int) -> pd.DataFrame:
    if seed == 0:
        return pd.read_parquet(SCORES)
    name = f"default__seed{seed}"
    rev = _exp_rev(name)
    if rev is None:
        cmd = [_dvc(), "exp", "run", "--temp", "--name", name, "-S", f"train.seed={seed}"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        rev = _exp_rev(name)
    raw = subprocess.run(["git", "show", f"{rev}:{SCORES}"], capture_output=True, check=True).stdout
    return pd.read_parquet(io.BytesIO(raw))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--metric", default="shapeland_utility")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    if load_params().train.seed != 0:
        raise SystemExit("params.yaml's train.seed must be 0: seed 0 is read from the workspace")
    per_seed = {s: scores_of(s) for s in args.seeds}
    mats: dict[str, np.ndarray] = {}
    for ckpt in per_seed[args.seeds[0]]["checkpoint"].unique():
        rows = []
        for s in args.seeds:
            d = per_seed[s]
            d = d[(d.metric == args.metric) & (d.checkpoint == ckpt)]
            rows.append(d.groupby("prompt_id")["value"].mean().sort_index())  # mean over sampling seeds
        if any(not r.index.equals(rows[0].index) for r in rows):
            raise SystemExit(f"{ckpt}: the seeds evaluated different prompts")
        mats[ckpt] = np.stack([r.to_numpy() for r in rows])
    print(f"{args.metric}: training seeds {args.seeds}, {mats['base'].shape[1]} prompts; 95% two-level bootstrap "
          f"(seeds x prompts, crossed), {args.n_boot} resamples")
    for ckpt, x in mats.items():
        e = two_level_bootstrap(x, args.n_boot, 0)
        line = f"{ckpt:>9}: {e.mean:.3f} [{e.lo:.3f}, {e.hi:.3f}]  per seed " + " / ".join(f"{m:.3f}" for m in x.mean(1))
        if ckpt != "base":
            d = paired_difference(x, mats["base"], args.n_boot, 0)
            line += f"  vs base {d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"
        print(line)


if __name__ == "__main__":
    main()
