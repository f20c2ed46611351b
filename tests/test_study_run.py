"""`seppo study` end to end in a scratch DVC project: experiments, shared stages, kill and resume.

The project's stages are stand-ins (a shared `world`, and an `evaluate` that writes the evaluate
stage's real output format from the params it is given), so the test exercises DVC experiments,
the records, the skipping of shared stages and resumption in seconds instead of training models.
Every stage invocation is appended to a log outside the project, which is how the test knows what
DVC actually ran. Only the processes started here are stopped (by their own process group).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

STAGE = '''import json, os, pathlib, sys, time
import pandas as pd, yaml
p = yaml.safe_load(open("params.yaml"))
log = open(os.environ["STUDY_TEST_LOG"], "a")
if sys.argv[1] == "world":
    pathlib.Path("w").mkdir(exist_ok=True); pathlib.Path("w/x").write_text("world")
    log.write("world\\n"); sys.exit(0)
t = p["train"]
log.write(f"evaluate {t['criterion']} {t['seed']}\\n"); log.flush()
time.sleep(float(os.environ.get("STUDY_TEST_SLEEP", "0")))
shift = {"none": 0.05, "sign": 0.1}[t["criterion"]]
rows = []
for k in range(t["rounds"] + 1):
    for i in range(6):
        for s in (0, 1):
            v = 0.3 + 0.05 * i + (shift * k + 0.01 * t["seed"] if k else 0.0)
            rows.append(dict(checkpoint="base" if k == 0 else f"round_{k}", round=k, prompt_id=f"eval-{i:04d}",
                             seed=s, metric="shapeland_utility", value=v))
pathlib.Path("reports/eval").mkdir(parents=True, exist_ok=True)
pd.DataFrame(rows).to_parquet("reports/eval/scores.parquet", index=False)
for k in range(1, t["rounds"] + 1):
    pathlib.Path(f"reports/metrics/round_{k}.json").write_text(json.dumps({"round": k, "oracle_flip_rate": 0.25}))
'''
DVC_YAML = {"stages": {
    "world": {"cmd": "python stage.py world", "deps": ["stage.py"], "outs": ["w"]},
    "evaluate": {"cmd": "python stage.py evaluate", "deps": ["w", "stage.py"], "params": ["train"],
                 "outs": [{"reports/eval": {"cache": False}}],
                 "metrics": [{f"reports/metrics/round_{k}.json": {"cache": False}} for k in (1, 2)]}}}
PARAMS = {"train": {"criterion": "none", "rounds": 2, "seed": 0},
          "study": {"rounds": 2, "seeds": [0, 1], "n_boot": 200, "compare_to": ["none"],
                    "variants": {"base": {"label": "base", "train": False},
                                 "none": {"label": "w/o anchor", "overrides": {"train.criterion": "none"}},
                                 "sign": {"label": "sign", "overrides": {"train.criterion": "sign"},
                                          "paper": "seppo"}}}}


def sh(cmd, cwd, env, timeout=300):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture()
def project(tmp_path):
    proj = tmp_path / "proj"
    (proj / "reports/metrics").mkdir(parents=True)
    env = dict(os.environ, STUDY_TEST_LOG=str(tmp_path / "stages.log"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    (proj / "stage.py").write_text(STAGE)
    (proj / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (proj / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"],
                ["git", "config", "user.name", "t"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"], [str(BIN / "dvc"), "repro", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline has run"]):
        sh(cmd, proj, env)
    return proj, env, tmp_path / "stages.log"


def _study(proj, env, *extra):
    return [sys.executable, "-m", "seppo.cli", "study", "--root", str(proj), "--no-replan", *extra]


def test_study_runs_experiments_shares_stages_and_resumes_after_a_kill(project):
    proj, env, log = project
    runs = proj / "reports/study/runs"
    # 1. start the study, kill it (the whole process group, DVC included) once the first run is recorded
    proc = subprocess.Popen(_study(proj, env, "--jobs", "1"), cwd=proj, env=dict(env, STUDY_TEST_SLEEP="2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 150
        while not (runs.is_dir() and any(runs.glob("*.json"))):
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    assert 1 <= len(before) < 4, before.keys()
    assert not (proj / "reports/study/aggregate.csv").exists()

    # 2. re-run (two at once): only the missing runs execute; finished records are left as they were
    sh(_study(proj, env, "--jobs", "2"), proj, env)
    after = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    assert set(after) == {"none__seed0.json", "none__seed1.json", "sign__seed0.json", "sign__seed1.json"}
    assert all(after[n] == b for n, b in before.items())
    lines = log.read_text().splitlines()
    assert lines.count("world") == 1  # computed once by the pipeline's own run; every experiment skipped it
    for name in before:  # a run recorded before the kill did not run again
        variant, seed = name[:-5].split("__seed")
        assert lines.count(f"evaluate {variant} {seed}") == 1, lines
    for variant in ("none", "sign"):
        for seed in (0, 1):
            assert f"evaluate {variant} {seed}" in lines

    # 3. the records hold what the stage computed: per-prompt means, win shares, round metrics
    rec = json.loads((runs / "sign__seed1.json").read_text())
    assert rec["overrides"] == {"train.criterion": "sign", "train.seed": 1, "train.rounds": 2}
    assert rec["checkpoints"]["round_2"]["shapeland_utility"]["per_prompt"][0] == pytest.approx(0.3 + 0.2 + 0.01)
    assert rec["round_metrics"]["2"]["oracle_flip_rate"] == 0.25
    exps = sh([str(BIN / "dvc"), "exp", "show", "--json"], proj, env)
    assert "sign__seed1" in exps and "none__seed0" in exps

    # 4. the aggregate: sign - none = 0.05 per round exactly (paired on seed and prompt)
    import pandas as pd

    t = pd.read_csv(proj / "reports/study/aggregate.csv")
    row = t[(t.variant == "sign") & (t["round"] == 2)].iloc[0]
    assert row["diff_vs_none"] == pytest.approx(0.1, abs=1e-6) and row["n_seeds"] == 2
    table = (proj / "reports/study/aggregate.csv").read_bytes()

    # 5. a third run does nothing new; --aggregate-only recomputes the same table from the records
    n = len(log.read_text().splitlines())
    out = sh(_study(proj, env), proj, env)
    assert len(log.read_text().splitlines()) == n and '"ran": []' in out
    (proj / "reports/study/aggregate.csv").unlink()
    sh(_study(proj, env, "--aggregate-only"), proj, env)
    assert (proj / "reports/study/aggregate.csv").read_bytes() == table

    # 6. a record lost after its experiment finished (or a run queued elsewhere) is collected, not re-run
    kept = json.loads((runs / "none__seed0.json").read_text())
    (runs / "none__seed0.json").unlink()
    res = json.loads(sh(_study(proj, env), proj, env))
    assert res["ran"] == ["none__seed0"] and len(log.read_text().splitlines()) == n
    again = json.loads((runs / "none__seed0.json").read_text())
    assert again["checkpoints"] == kept["checkpoints"] and again["experiment"]["rev"] == kept["experiment"]["rev"]

    # 7. a changed variant (its lr) re-runs only that variant's runs, replacing their experiments
    p = yaml.safe_load((proj / "params.yaml").read_text())
    p["study"]["variants"]["sign"]["lr"] = 1e-3
    (proj / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    res = json.loads(sh(_study(proj, env, "--jobs", "2"), proj, env))
    assert sorted(res["ran"]) == ["sign__seed0", "sign__seed1"] and len(res["skipped"]) == 2
    assert json.loads((runs / "sign__seed0.json").read_text())["overrides"]["train.lr"] == 1e-3


def test_study_deployment_runs_from_the_server_and_publishes_artifacts(tmp_path):
    """The served `seppo-study` deployment, triggered through the API, aggregates committed records."""
    from seppo.config import parse_params
    from tests.prefect_server import ROOT, prefect_server
    from tests.test_study_stats import STUDY, _write_runs

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    _write_runs(proj, parse_params(STUDY), {"none": 0.05, "sign": 0.1})
    with prefect_server(tmp_path) as (env, procs):
        env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT}"  # this checkout's seppo, not an installed one
        serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--project-dir", str(proj), "--no-replan"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        procs.append(serve)
        deadline = time.time() + 120
        while "seppo-study" not in subprocess.run([str(BIN / "prefect"), "deployment", "ls"], cwd=ROOT, env=env,
                                                  capture_output=True, text=True).stdout:
            assert time.time() < deadline and serve.poll() is None, "deployment was not served"
            time.sleep(2)
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "seppo-study/seppo", "--param",
                              "aggregate_only=true", "--watch", "--watch-timeout", "240"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "Completed" in run.stdout + run.stderr, run.stdout + run.stderr
        art = subprocess.run([str(BIN / "prefect"), "artifact", "inspect", "seppo-study"], cwd=ROOT, env=env,
                             capture_output=True, text=True).stdout
        assert "w/o anchor" in art and "diff_vs_none" in art
    assert (proj / "reports/study/aggregate.csv").exists()


def test_a_failing_run_is_named_and_does_not_stop_the_others(project):
    proj, env, log = project
    p = yaml.safe_load((proj / "params.yaml").read_text())
    p["study"]["seeds"] = [0]
    p["study"]["variants"]["indicator"] = {"label": "indicator", "overrides": {"train.criterion": "indicator"}}
    (proj / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    out = subprocess.run(_study(proj, env, "--jobs", "1"), cwd=proj, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert "1 of 3 runs failed" in out.stderr and "indicator__seed0" in out.stderr and "study-logs" in out.stderr
    assert "KeyError: 'indicator'" in out.stderr  # the failing stage's own error, from the run's log
    assert sorted(x.name for x in (proj / "reports/study/runs").glob("*.json")) == ["none__seed0.json",
                                                                                   "sign__seed0.json"]
    assert (proj / "reports/study/aggregate.csv").exists()


def test_a_run_that_met_dvcs_lock_is_started_again_and_another_failure_is_not(tmp_path, monkeypatch):
    """`dvc exp run` that could not take the repository lock never ran: it is retried; a real failure is not."""
    import sys

    from seppo.study import runner

    monkeypatch.setattr(runner, "LOCK_WAIT_S", 0.0)
    monkeypatch.setattr(runner, "_drop_stale_experiment", lambda *a: None)
    marker = tmp_path / "attempts"
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
              "p.write_text(str(n + 1)); print(sys.argv[2] if n < 2 else 'ran'); sys.exit(1 if n < 2 else 0)")
    lock = "ERROR: Unable to acquire lock. Most likely another DVC process is running"
    runner._execute(tmp_path, "r", [sys.executable, "-c", script, str(marker), lock], None, tmp_path / "logs")
    assert marker.read_text() == "3" and (tmp_path / "logs/r.log").read_text().endswith("ran\n")
    marker.unlink()
    with pytest.raises(runner.StudyError, match="exited 1"):
        runner._execute(tmp_path, "r", [sys.executable, "-c", script, str(marker), "ERROR: a stage failed"], None,
                        tmp_path / "logs")
    assert marker.read_text() == "1"  # not retried
