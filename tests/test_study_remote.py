"""The study on two machines: a local Prefect server, a bare git repository and a local DVC remote as the shared
storage, two process workers in two separate clones (`seppo study --submit`, docs/scale.md).

The project is the stand-in of tests/test_study_run.py (a shared `world` stage and an `evaluate` that writes the real
record format), so the test exercises the distribution itself: submission exactly once, each run executed once by
one of the workers, the shared stage restored from the DVC remote instead of recomputed, the experiments travelling
through the remotes, and an aggregate byte-identical to a one-machine run of the same matrix.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.prefect_server import ROOT, prefect_server, stop
from tests.test_study_run import BIN, DVC_YAML, PARAMS, STAGE, sh

pytestmark = pytest.mark.slow


def _clone(src, dest, env):
    sh(["git", "clone", "-q", "-b", "main", str(src), str(dest)], dest.parent, env)
    for cmd in (["git", "config", "user.email", "w@t.invalid"], ["git", "config", "user.name", "w"]):
        sh(cmd, dest, env)
    return dest


def _study(root, *extra):
    return [sys.executable, "-m", "seppo.cli", "study", "--root", str(root), "--no-replan", *extra]


def test_two_workers_in_two_clones_run_every_run_once_and_aggregate_as_one_machine(tmp_path):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               STUDY_TEST_LOG=str(tmp_path / "head.log"))
    remote = tmp_path / "remote.git"
    sh(["git", "init", "-q", "--bare", str(remote)], tmp_path, env)
    head = tmp_path / "head"
    (head / "reports/metrics").mkdir(parents=True)
    (head / "stage.py").write_text(STAGE)
    (head / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (head / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    dvc = str(BIN / "dvc")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"], ["git", "config", "user.name", "t"],
                [dvc, "init", "-q"], [dvc, "config", "core.analytics", "false"],
                [dvc, "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote")], [dvc, "repro", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline has run"],
                ["git", "remote", "add", "origin", str(remote)], ["git", "push", "-q", "origin", "HEAD:refs/heads/main"]):
        sh(cmd, head, env)

    # the one-machine reference: the same matrix (2 variants x 2 seeds x 2 rounds) in a clone of its own
    solo = _clone(remote, tmp_path / "solo", env)
    sh([dvc, "pull", "-q"], head, env)
    sh([dvc, "push", "-q"], head, env)
    sh([dvc, "pull", "-q"], solo, env)
    sh(_study(solo, "--jobs", "1"), solo, env)
    one_machine = (solo / "reports/study/aggregate.csv").read_bytes()

    workers = {n: _clone(remote, tmp_path / f"worker-{n}", env) for n in ("a", "b")}
    with prefect_server(tmp_path) as (penv, procs):
        penv = dict(penv, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", STUDY_TEST_LOG=str(tmp_path / "head.log"),
                    PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="0")
        # 1. submitted twice before any worker exists: the same four flow runs, not eight
        first = json.loads(sh(_study(head, "--submit"), head, penv))
        again = json.loads(sh(_study(head, "--submit"), head, penv))
        assert len(first["submitted"]) == 4 and again["submitted"] == first["submitted"]

        # 2. two workers, each in its own clone, one run at a time each
        for n, clone in workers.items():
            wenv = dict(penv, SEPPO_PROJECT_DIR=str(clone), STUDY_TEST_LOG=str(tmp_path / f"worker-{n}.log"),
                        STUDY_TEST_SLEEP="3")
            procs.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "seppo-study",
                                           "--type", "process", "--limit", "1", "--name", f"worker-{n}"],
                                          cwd=clone, env=wenv, stdout=open(tmp_path / f"worker-{n}.out", "w"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
        try:
            res = subprocess.run(_study(head, "--submit", "--wait"), cwd=head, env=penv, capture_output=True,
                                 text=True, timeout=900)
        finally:
            stop(procs[1:])
        logs = {n: (tmp_path / f"worker-{n}.log").read_text().splitlines()
                if (tmp_path / f"worker-{n}.log").exists() else [] for n in workers}
        assert res.returncode == 0, res.stdout + res.stderr + "".join(
            (tmp_path / f"worker-{n}.out").read_text()[-3000:] for n in workers)

    # 3. every run executed at most once, by one worker or the other; the shared stage came from the DVC remote, and
    # so did none__seed0: its params are the baseline's own (params.yaml's train section), whose evaluate the head's
    # `dvc repro` computed, so the pushed run cache restores it on the worker (the one-machine study computed it anew)
    ran = logs["a"] + logs["b"]
    assert sorted(ran) == ["evaluate none 1", "evaluate sign 0", "evaluate sign 1"], logs
    assert logs["a"] and logs["b"], logs  # both machines worked
    assert "world" not in ran
    out = json.loads(res.stdout)
    assert sorted(out["collected"]) == ["none__seed0", "none__seed1", "sign__seed0", "sign__seed1"]
    assert out["missing"] == []

    # 4. the records came through the remotes, and the aggregate is the one-machine aggregate, byte for byte
    recs = sorted((head / "reports/study/runs").glob("*.json"))
    assert [p.stem for p in recs] == ["none__seed0", "none__seed1", "sign__seed0", "sign__seed1"]
    for p in recs:
        rev = json.loads(p.read_text())["experiment"]["rev"]
        assert sh(["git", "cat-file", "-t", rev], head, env).strip() == "commit"
    assert (head / "reports/study/aggregate.csv").read_bytes() == one_machine

    # 5. a third submission finds nothing missing: it submits nothing and needs no server (none answers here)
    last = json.loads(sh(_study(head, "--submit"), head, dict(env, PREFECT_API_URL="http://127.0.0.1:9/api")))
    assert last["submitted"] == {}

