"""The evaluate flow fans the stale eval_<checkpoint> stages out over a local 2-worker Dask cluster."""

import json
import os
import subprocess
import sys

import pytest

from tests.prefect_server import BIN, ROOT, prefect_server

DVC = """stages:
{evals}
  evaluate:
    cmd: python score.py
    deps: [score.py, {eval_outs}]
    outs:
      - reports/eval/summary.csv:
          cache: false
"""
EVAL = """  eval_{name}:
    cmd: python gen.py {name}
    deps: [gen.py]
    outs: [data/eval/{name}]
"""
GEN = """import json, os, sys, time, pathlib
name = sys.argv[1]
t0 = time.time()
time.sleep(3)  # long enough that both workers are busy at once
out = pathlib.Path('data/eval') / name
out.mkdir(parents=True, exist_ok=True)
(out / 'run.json').write_text(json.dumps({'worker_pid': os.getppid(), 'start': t0, 'end': time.time(),
                                          'threads': os.environ.get('OMP_NUM_THREADS')}))
"""
SCORE = """import pathlib
names = sorted(p.name for p in pathlib.Path('data/eval').iterdir() if p.is_dir())
pathlib.Path('reports/eval').mkdir(parents=True, exist_ok=True)
pathlib.Path('reports/eval/summary.csv').write_text('checkpoint,metric,mean\\n' + ''.join(f'{n},m,1\\n' for n in names))
"""


def sh(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.fixture()
def eval_project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    names = ["base", "round_1", "round_2"]
    (proj / "dvc.yaml").write_text(DVC.format(evals="".join(EVAL.format(name=n) for n in names),
                                              eval_outs=", ".join(f"data/eval/{n}" for n in names)))
    (proj / "gen.py").write_text(GEN)
    (proj / "score.py").write_text(SCORE)
    (proj / "params.yaml").write_text("orchestration:\n  eval_task_runner: dask\n  dask_workers: 2\n")
    sh(["git", "init", "-q"], proj)
    sh([str(BIN / "dvc"), "init", "-q"], proj)
    return proj, names


def run_evaluate_flow(proj, env):
    """In a subprocess bound to the test's Prefect server: its Dask workers inherit the API URL."""
    out = subprocess.run([sys.executable, "-c", f"from flows.pipeline import evaluate; evaluate({str(proj)!r})"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_evaluate_flow_fans_out_over_two_dask_workers_and_commits_to_dvc(eval_project, tmp_path):
    proj, names = eval_project
    with prefect_server(tmp_path) as (env, _):
        run_evaluate_flow(proj, env)
        runs = [json.loads((proj / f"data/eval/{n}/run.json").read_text()) for n in names]
        before = [(proj / f"data/eval/{n}/run.json").read_text() for n in names]
        run_evaluate_flow(proj, env)  # a second run finds nothing stale and starts no stage command
        after = [(proj / f"data/eval/{n}/run.json").read_text() for n in names]
    assert len({r["worker_pid"] for r in runs}) == 2  # two worker processes did the work
    spans = sorted((r["start"], r["end"]) for r in runs)
    assert spans[1][0] < spans[0][1]  # and at the same time
    assert {r["threads"] for r in runs} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert (proj / "reports/eval/summary.csv").read_text().count(",m,1") == 3
    # the outputs are recorded as if `dvc repro` had made them: nothing is stale
    assert "up to date" in sh([str(BIN / "dvc"), "status"], proj).lower()
    assert after == before
