"""A real local Prefect server, the served deployment, a run triggered through the API.

The run carries a params override, so it must show up as a DVC experiment; its artifacts (metrics
table, report Markdown) must exist under their stable keys. Only the processes started here are
stopped.
"""

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


def test_served_deployment_runs_as_a_dvc_experiment(scratch_project, tmp_path):
    with prefect_server(tmp_path) as (env, procs):
        serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--project-dir", str(scratch_project),
                                  "--no-replan"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(serve)
        deadline = time.time() + 120
        while sh([str(BIN / "prefect"), "deployment", "ls"], ROOT, env, check=False).stdout.find("seppo") < 0:
            assert time.time() < deadline and serve.poll() is None, "deployment was not served"
            time.sleep(2)
        run = sh([str(BIN / "prefect"), "deployment", "run", "seppo-pipeline/seppo",
                  "--param", 'overrides={"train.lr": 0.5}', "--param", "experiment_name=ui-lr-05", "--watch",
                  "--watch-timeout", "240"], ROOT, env, check=False, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Completed" in run.stdout + run.stderr
        exps = sh([str(BIN / "dvc"), "exp", "show", "--json"], scratch_project, env).stdout
        assert "ui-lr-05" in exps and "0.5" in exps
        art = sh([str(BIN / "prefect"), "artifact", "inspect", "seppo-metrics"], ROOT, env).stdout
        assert "shapeland_utility" in art and "0.5" in art
        md = sh([str(BIN / "prefect"), "artifact", "inspect", "seppo-report"], ROOT, env).stdout
        assert "lr = 0.5" in md
