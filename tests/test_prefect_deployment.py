"""A real local Prefect server, the served deployment, runs triggered through the API.

A run carrying a params override must show up as a DVC experiment with its artifacts (metrics
table, report Markdown) under keys named for the experiment, and leave the workspace byte-identical
(git status, dvc status and every file's bytes). Bad overrides must fail at once, naming the key,
with nothing run and nothing touched. Only the processes started here are stopped.
"""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.prefect_server import BIN, ROOT, prefect_server

TRIVIAL_DVC = """stages:
  report:
    cmd: python make_report.py
    deps: [make_report.py]
    params: [train.lr]
    outs:
      - reports/report.md:
          cache: false
      - reports/eval/summary.csv:
          cache: false
"""
MAKE_REPORT = """import yaml, pathlib
lr = yaml.safe_load(open('params.yaml'))['train']['lr']
pathlib.Path('reports/eval').mkdir(parents=True, exist_ok=True)
pathlib.Path('reports/report.md').write_text(f'# report\\n\\nlr = {lr}\\n')
pathlib.Path('reports/eval/summary.csv').write_text(f'checkpoint,metric,mean\\nround_1,shapeland_utility,{lr}\\n')
"""


def sh(cmd, cwd, env, check=True, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, check=check, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def scratch_project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    env = dict(os.environ)
    sh(["git", "init", "-q"], proj, env)
    sh(["git", "config", "user.email", "t@t.invalid"], proj, env)
    sh(["git", "config", "user.name", "t"], proj, env)
    (proj / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (proj / "dvc.yaml").write_text(TRIVIAL_DVC)
    (proj / "make_report.py").write_text(MAKE_REPORT)
    sh([str(BIN / "dvc"), "init", "-q"], proj, env)
    sh([str(BIN / "dvc"), "config", "core.analytics", "false"], proj, env)
    sh(["git", "add", "-A"], proj, env)
    sh(["git", "commit", "-qm", "init"], proj, env)
    return proj


def snapshot(proj: Path) -> dict[str, str]:
    """sha256 of every file of the workspace except git's and DVC's own bookkeeping."""
    return {str(p.relative_to(proj)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(proj.rglob("*"))
            if p.is_file() and not {".git", ".dvc"} & set(p.relative_to(proj).parts)}


def assert_clean(proj: Path, env: dict, before: dict[str, str]) -> None:
    assert snapshot(proj) == before
    assert sh(["git", "status", "--porcelain"], proj, env).stdout == ""
    assert "up to date" in sh([str(BIN / "dvc"), "status"], proj, env).stdout


def deployment_run(env: dict, *params: str):
    args = [str(BIN / "prefect"), "deployment", "run", "seppo-pipeline/seppo"]
    for p in params:
        args += ["--param", p]
    return sh(args + ["--watch", "--watch-timeout", "240"], ROOT, env, check=False, timeout=300)


@pytest.mark.slow
def test_served_deployment_runs_isolated_experiments(scratch_project, tmp_path):
    env0 = dict(os.environ)
    sh([str(BIN / "dvc"), "repro", "-q"], scratch_project, env0)
    sh(["git", "add", "-A"], scratch_project, env0)
    sh(["git", "commit", "-qm", "results"], scratch_project, env0)
    before = snapshot(scratch_project)
    assert "reports/report.md" in before and "lr = 0.1" in (scratch_project / "reports/report.md").read_text()
    with prefect_server(tmp_path) as (env, procs):
        serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--project-dir", str(scratch_project),
                                  "--no-replan"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(serve)
        deadline = time.time() + 120
        while sh([str(BIN / "prefect"), "deployment", "ls"], ROOT, env, check=False).stdout.find("seppo") < 0:
            assert time.time() < deadline and serve.poll() is None, "deployment was not served"
            time.sleep(2)
        # one run at a time: later UI runs wait for the slot instead of racing on the workspace
        dep = sh([str(BIN / "prefect"), "deployment", "inspect", "seppo-pipeline/seppo"], ROOT, env).stdout
        assert "'limit': 1" in dep and "ENQUEUE" in dep, dep

        run = deployment_run(env, 'overrides={"train.lr": 0.5}', "experiment_name=ui-lr-05")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Completed" in run.stdout + run.stderr
        assert_clean(scratch_project, env, before)
        exps = sh([str(BIN / "dvc"), "exp", "show", "--json"], scratch_project, env).stdout
        assert "ui-lr-05" in exps and "0.5" in exps
        art = sh([str(BIN / "prefect"), "artifact", "inspect", "seppo-metrics-ui-lr-05"], ROOT, env).stdout
        assert "shapeland_utility" in art and "0.5" in art
        md = sh([str(BIN / "prefect"), "artifact", "inspect", "seppo-report-ui-lr-05"], ROOT, env).stdout
        assert "lr = 0.5" in md
        logs = sh([str(BIN / "prefect"), "flow-run", "logs", flow_run_id(run.stdout)], ROOT, env).stdout
        assert "==== stage report ====" in logs and "dvc exp run --temp --name ui-lr-05" in logs, logs
        # The workspace's own stable-key artifacts were not written by the experiment.
        assert "lr = 0.5" not in sh([str(BIN / "prefect"), "artifact", "inspect", "seppo-report"], ROOT, env,
                                    check=False).stdout

        for bad, key in [('{"train.lr": "fast"}', "train.lr"), ('{"+train.lrr": 1}', "train.lrr")]:
            t0 = time.time()
            run = deployment_run(env, f"overrides={bad}", "experiment_name=bad")
            out = run.stdout + run.stderr
            assert run.returncode != 0 and "Failed" in out, out
            logs = sh([str(BIN / "prefect"), "flow-run", "logs", flow_run_id(out)], ROOT, env).stdout
            assert key in logs and "BadOverrides" in logs, logs
            assert "dvc exp run" not in logs and "Retrying" not in logs
            assert time.time() - t0 < 60
            assert_clean(scratch_project, env, before)
        assert "ui-lr-05" in sh([str(BIN / "dvc"), "exp", "ls"], scratch_project, env).stdout
        assert "bad" not in sh([str(BIN / "dvc"), "exp", "ls", "--name-only"], scratch_project, env).stdout.split()


def flow_run_id(out: str) -> str:
    import re

    m = re.search(r"UUID:\s*([0-9a-f-]{36})", out) or re.search(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", out)
    assert m, out
    return m.group(1)
