"""kill -9 in the middle of a long non-training stage, then a re-run: the same bytes as a clean run.

Each stage runs as a real `seppo` subprocess that SIGKILLs itself at a chosen point of its writes
(tests/kill_at.py: with the output folder complete but not yet swapped in, or just before a JSON
file). The re-run must reproduce every output and metrics file byte for byte, leave no leftovers
beside them, and keep wall-clock figures in reports/metrics/timing/ only. For eval-generate and
evaluate the same happens under `dvc repro`, which must then report nothing stale and must not
re-run `evaluate` after a killed eval-generate (its inputs did not change); git sees no change
beyond dvc.lock's record of the timing file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seppo.config import IngestConfig, WorldConfig
from tests.prefect_server import BIN, ROOT

WORLD = dict(train_prompts=10, pairs_per_prompt=4, eval_prompts=3, shard_rows=20, web_size=40,
             utility_check_renders=20, tie_prob=0.0)
PARAMS = {
    "world": WORLD,
    "base_samples": {"prompts": 2},
    "base_model": dict(text_hidden=32, text_layers=1, max_tokens=16, vae_channels=[8, 16, 16], vae_steps=3,
                       unet_channels=[16, 32], unet_steps=3, batch_size=4),
    "scorer_model": dict(width=32, heads=2, vision_layers=1, text_layers=1, projection_dim=16,
                         contrastive_steps=4, contrastive_batch=16, preference_steps=3, preference_batch=8,
                         warmup_steps=1, holdout_share=0.3),
    "evaluate": {"prompts": "prompts.txt", "seeds": [0, 1], "n_boot": 100, "grid_prompts": 2,
                 "sampling": {"sampler": "ddim", "steps": 2, "guidance": 3.0}, "scorers": ["shapeland_utility"]},
}
PROMPTS = ["one large red circle on the left on a white background",
           "two small blue squares at the top on a black background"]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}",
                PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def seppo(cwd: Path, *args: str, kill: str | None = None) -> subprocess.CompletedProcess:
    pre = [sys.executable, str(ROOT / "tests/kill_at.py"), kill] if kill else [sys.executable, "-m", "seppo.cli"]
    return subprocess.run(pre + list(args), cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)


def tree(root: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), hidden leftovers included."""
    out = {}
    for p in paths:
        base = root / p
        files = [base] if base.is_file() else sorted(f for f in base.rglob("*") if f.is_file())
        for f in files:
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def keys(obj) -> list[str]:
    """Every key of a nested JSON value."""
    if isinstance(obj, dict):
        return [*obj, *(sub for v in obj.values() for sub in keys(v))]
    if isinstance(obj, list):
        return [sub for v in obj for sub in keys(v)]
    return []


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """params.yaml, a prompts file, the world and its ingested pairs, the tiny pipeline as models/base."""
    from seppo.data.ingest import run_ingest
    from seppo.world.stage import run_world
    from tests.dummy import save_dummy_pipeline

    root = tmp_path_factory.mktemp("kill")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    run_world(WorldConfig(**WORLD), root / "data/world", root / "reports/metrics/world.json")
    run_ingest(IngestConfig(source=str(root / "data/world/pickapic")), root / "data/ingest",
               root / "reports/metrics/ingest.json")
    shutil.copytree(save_dummy_pipeline(root / "tiny"), root / "models/base")
    return root


STAGES = {
    "base-model": (["base-model", "--out", "out/base", "--metrics", "out/m/base_model.json"],
                   ["out/base", "out/m/base_model.json"], "out/m/timing/base_model.json"),
    "scorer-model": (["scorer-model", "--web", "data/world/web", "--out", "out/pickscore",
                      "--metrics", "out/m/scorer_model.json"],
                     ["out/pickscore", "out/m/scorer_model.json"], "out/m/timing/scorer_model.json"),
    "eval-generate": (["eval-generate", "--checkpoint", "models/base", "--name", "base", "--out", "out/eval/base",
                       "--timing", "out/m/timing/eval_base.json"], ["out/eval/base"], "out/m/timing/eval_base.json"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_stage_reruns_to_the_same_bytes(project, tmp_path, stage):
    args, outputs, timing = STAGES[stage]
    work = tmp_path / "w"
    shutil.copytree(project, work, symlinks=True)

    clean = seppo(work, *args)
    assert clean.returncode == 0, clean.stderr
    reference = tree(work, *outputs)
    assert json.loads((work / timing).read_text())  # wall clock recorded, but only here
    for path in reference:  # the stage's own records carry no wall-clock keys
        if path.endswith(("settings.json", "seppo_provenance.json")) or path.startswith("out/m/"):
            assert not [k for k in keys(json.loads((work / path).read_text())) if k.startswith("seconds")], path
    shutil.rmtree(work / "out")

    # the output folder complete in its temp dir; then (second kill) in place but metrics unwritten
    for point in ("dir", "json:1"):
        killed = seppo(work, *args, kill=point)
        assert killed.returncode == -9, (point, killed.stdout, killed.stderr)
        rerun = seppo(work, *args)
        assert rerun.returncode == 0, rerun.stderr
        assert tree(work, *outputs) == reference, point
        for out in outputs:  # no temp or moved-aside folder left beside an output
            assert not [n for n in listing((work / out).parent) if n.endswith((".tmp", ".old"))], point


DVC_YAML = {"stages": {
    "eval_base": {"cmd": "seppo eval-generate --checkpoint models/base --name base",
                  "deps": ["models/base", "prompts.txt"], "params": ["evaluate.prompts", "evaluate.seeds",
                                                                    "evaluate.sampling"],
                  "outs": ["data/eval/base"],
                  "metrics": [{"reports/metrics/timing/eval_base.json": {"cache": False}}]},
    "evaluate": {"cmd": "seppo evaluate --images data/eval/base", "deps": ["data/eval/base"], "params": ["evaluate"],
                 "outs": [{"reports/eval": {"cache": False}}],
                 "metrics": [{"reports/metrics/eval.json": {"cache": False}}],
                 "plots": [{"reports/plots/eval_rounds.csv": {"cache": False}}]},
}}


def sh(cmd: list[str], cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env={**env(), **(extra or {})}, capture_output=True, text=True, timeout=600)


def lock_without_timing(root: Path) -> dict:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for st in lock["stages"].values():
        st["outs"] = [o for o in st.get("outs", []) if "/timing/" not in o["path"]]
    return lock


@pytest.mark.slow
def test_killed_stages_under_dvc_repro_leave_nothing_stale(project, tmp_path):
    work = tmp_path / "proj"
    shutil.copytree(project, work, symlinks=True)
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        assert sh(cmd, work).returncode == 0
    (work / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    first = sh([str(BIN / "dvc"), "repro"], work)
    assert first.returncode == 0, first.stdout + first.stderr
    shutil.copy(ROOT / ".gitignore", work / ".gitignore")  # the project's ignore rules (.*.tmp, .*.old)
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-qm", "r"]):
        assert sh(cmd, work).returncode == 0
    outs = ["data/eval/base", "reports/eval", "reports/metrics/eval.json", "reports/plots/eval_rounds.csv"]
    reference, lock = tree(work, *outs), lock_without_timing(work)

    # a `seppo` on PATH that kills itself: DVC runs the stage's own command and sees it die
    shim = tmp_path / "shim"
    shim.mkdir()
    for point, stage in (("dir", "eval_base"), ("json:2", "eval_base"), ("dir", "evaluate"), ("json:1", "evaluate")):
        (shim / "seppo").write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/kill_at.py'} {point} \"$@\"\n")
        (shim / "seppo").chmod(0o755)
        killed = sh([str(BIN / "dvc"), "repro", "-f", "-s", stage], work,
                    {"PATH": f"{shim}{os.pathsep}{env()['PATH']}"})
        # SIGKILL is reported as -9 when the shell execs the command, 137 (128 + 9) when it forks
        died = re.search(r"exited with (-9|137)\b", killed.stdout + killed.stderr)
        assert killed.returncode != 0 and died, (point, stage, killed.stdout, killed.stderr)
        again = sh([str(BIN / "dvc"), "repro"], work)
        assert again.returncode == 0, again.stdout + again.stderr
        assert tree(work, *outs) == reference, (point, stage)
        assert lock_without_timing(work) == lock, (point, stage)
        if stage == "eval_base":  # identical images: evaluate's inputs did not change, so it is not re-run
            assert "Running stage 'evaluate'" not in again.stdout, again.stdout
        status = sh([str(BIN / "dvc"), "status"], work)
        assert "up to date" in status.stdout, status.stdout
        # DVC may restore a killed stage's outputs from its run cache without running it, so the
        # killed writer's temp folder can stay until the stage next runs: git must ignore it
        changed = sh(["git", "status", "--porcelain", "--untracked-files=all"], work).stdout.splitlines()
        assert {line[3:] for line in changed} <= {"dvc.lock", "reports/metrics/timing/eval_base.json"}, changed
