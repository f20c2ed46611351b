"""Prefect 3 flows over the DVC pipeline: DVC stays the single source of truth for what is stale.

Tasks call `dvc repro <stage>` (or `dvc exp run` when a run carries params overrides, so a run
started from the Prefect UI with new values is recorded as a DVC experiment, not lost). Each flow
publishes a table artifact of the metrics and a Markdown artifact of the report under stable keys.

Flows: `prep` (world, base model, ingest, validate, cache), `seppo_round` (select, reference
samples, train for one round), `select`, `evaluate`, `report`, and `seppo_pipeline` (all of them).

With `orchestration.eval_task_runner: dask` in params.yaml, `evaluate` fans the stale
eval_<checkpoint> stages out over a Dask cluster (a local one with `orchestration.dask_workers`
worker processes, or `orchestration.dask_address`): each worker runs one stage's own command from
dvc.yaml, then `dvc commit` records the outputs exactly as `dvc repro` would, and the scoring stage
runs once on the gathered images. DVC's repository lock forbids concurrent `dvc repro`s, hence
running the commands and committing.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

PREP_STAGES = ["world", "base_model", "base_samples", "ingest", "validate", "cache"]
METRICS_KEY = "seppo-metrics"
REPORT_KEY = "seppo-report"


def _bin(name: str) -> str:
    """A tool from the interpreter's own environment (the project's .venv), else from PATH."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def _run(cmd: list[str], cwd: str, extra_env: dict[str, str] | None = None) -> str:
    logger = get_run_logger()
    logger.info("$ %s  (in %s)", " ".join(cmd), cwd)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               **(extra_env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines()[-60:]:
        logger.info(line)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


@task(retries=2, retry_delay_seconds=10)
def plan(project_dir: str) -> None:
    """Regenerate dvc.yaml from params.yaml (the number of rounds shapes the graph)."""
    _run([_bin("seppo"), "plan"], project_dir)


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc repro {stages}")
def dvc_repro(stages: list[str], project_dir: str) -> None:
    """Reproduce stages and what they depend on; a no-op where DVC finds nothing stale."""
    _run([_bin("dvc"), "repro", *stages], project_dir)


@task(retries=1, retry_delay_seconds=10)
def dvc_exp_run(overrides: dict[str, Any], name: str | None, project_dir: str) -> str:
    """Run the whole pipeline as a DVC experiment with `-S key=value` overrides."""
    cmd = [_bin("dvc"), "exp", "run"]
    for k, v in sorted(overrides.items()):
        cmd += ["-S", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    if name:
        cmd += ["--name", name]
    return _run(cmd, project_dir)


def plan_command(overrides: dict[str, Any]) -> list[str]:
    """`seppo plan --set k=v ...` with every override (values as JSON, which `--set` reads as YAML)."""
    cmd = [_bin("seppo"), "plan"]
    for k, v in sorted(overrides.items()):
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd


@task
def plan_with_overrides(overrides: dict[str, Any], project_dir: str) -> None:
    """Re-plan the graph with the overrides first: besides train.rounds, other keys shape it too (the
    ingest source is a dep of ingest; a stage's params follow its settings, e.g. train.lr_schedule)."""
    _run(plan_command(overrides), project_dir)


@task
def publish_artifacts(project_dir: str) -> dict:
    """A table artifact of the metrics and a Markdown artifact of the report (stable keys)."""
    root = Path(project_dir)
    summary = root / "reports" / "eval" / "summary.csv"
    published = {}
    if summary.exists():
        with summary.open() as f:
            rows = list(csv.DictReader(f))
        create_table_artifact(table=rows, key=METRICS_KEY,
                              description="Evaluation: mean, 95% bootstrap CI and win rate vs base, per checkpoint")
        published["table"] = len(rows)
    report = root / "reports" / "report.md"
    if report.exists():
        create_markdown_artifact(markdown=report.read_text(), key=REPORT_KEY, description="SePPO run report")
        published["markdown"] = True
    return published


def _params(project_dir: str) -> dict:
    import yaml

    return yaml.safe_load((Path(project_dir) / "params.yaml").read_text()) or {}


def _rounds(project_dir: str) -> int:
    return int(_params(project_dir).get("train", {}).get("rounds", 3))


def _orchestration(project_dir: str) -> dict:
    """params.yaml's `orchestration` section, validated, defaults filled in (seppo.config)."""
    from seppo.config import OrchestrationConfig

    return OrchestrationConfig.model_validate(_params(project_dir).get("orchestration") or {}).model_dump()


@task
def stale_eval_stages(project_dir: str) -> dict[str, str]:
    """eval_<checkpoint> stages whose outputs are missing or out of date -> their commands."""
    import yaml

    stages = yaml.safe_load((Path(project_dir) / "dvc.yaml").read_text())["stages"]
    names = [n for n in stages if n.startswith("eval_")]
    status = json.loads(_run([_bin("dvc"), "status", "--json", *names], project_dir) or "{}")
    return {n: stages[n]["cmd"] for n in names if n in status}


@task(retries=1, retry_delay_seconds=10, task_run_name="{name} on a worker")
def run_stage_command(name: str, cmd: str, project_dir: str, threads: int) -> str:
    """One stage's command, as dvc.yaml states it; threads split the machine between workers."""
    _run(shlex.split(cmd), project_dir, {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return name


@task
def dvc_commit(stages: list[str], project_dir: str) -> None:
    """Record outputs produced outside `dvc repro` in dvc.lock (hashes of deps, params and outs)."""
    if stages:
        _run([_bin("dvc"), "commit", "--force", *stages], project_dir)


@flow(name="evaluate-fan-out")
def evaluate_fan_out(project_dir: str = ".", threads_per_worker: int = 1) -> list[str]:
    """Generate the stale checkpoints' evaluation images in parallel on the flow's task runner."""
    stale = stale_eval_stages(project_dir)
    futures = [run_stage_command.submit(n, cmd, project_dir, threads_per_worker) for n, cmd in stale.items()]
    done = [f.result() for f in futures]
    dvc_commit(done, project_dir)
    return done


def dask_runner(orch: dict):
    from prefect_dask import DaskTaskRunner

    if orch.get("dask_address"):
        return DaskTaskRunner(address=orch["dask_address"])
    return DaskTaskRunner(cluster_kwargs={"n_workers": orch["dask_workers"], "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@flow(name="prep")
def prep(project_dir: str = ".") -> None:
    dvc_repro(PREP_STAGES, project_dir)


@flow(name="select")
def select(round_k: int, project_dir: str = ".") -> None:
    dvc_repro([f"select_{round_k}"], project_dir)


@flow(name="seppo-round", flow_run_name="round {round_k}")
def seppo_round(round_k: int, project_dir: str = ".") -> None:
    dvc_repro([f"select_{round_k}", f"refsamples_{round_k}", f"train_{round_k}"], project_dir)


@flow(name="evaluate")
def evaluate(project_dir: str = ".") -> dict:
    orch = _orchestration(project_dir)
    if orch["eval_task_runner"] == "dask":
        workers = orch["dask_workers"]
        threads = max(1, (os.cpu_count() or 1) // workers)
        evaluate_fan_out.with_options(task_runner=dask_runner(orch))(project_dir, threads)
    dvc_repro(["evaluate"], project_dir)
    return publish_artifacts(project_dir)


@flow(name="report")
def report(project_dir: str = ".") -> dict:
    dvc_repro(["report"], project_dir)
    return publish_artifacts(project_dir)


@flow(name="seppo-pipeline")
def seppo_pipeline(overrides: dict[str, Any] | None = None, experiment_name: str | None = None,
                   stages: list[str] | None = None, project_dir: str = ".", replan: bool = True) -> dict:
    """The whole pipeline. With ``overrides`` (params keys -> values) it runs as a DVC experiment.

    ``stages`` restricts a run without overrides to those stages (and what they depend on);
    ``replan`` regenerates dvc.yaml from params first (off only for projects with their own dvc.yaml).
    """
    project_dir = str(Path(project_dir).resolve())
    if overrides:
        if replan:
            plan_with_overrides(overrides, project_dir)
        dvc_exp_run(overrides, experiment_name, project_dir)
        return publish_artifacts(project_dir)
    if replan:
        plan(project_dir)
    if stages:
        dvc_repro(stages, project_dir)
        return publish_artifacts(project_dir)
    prep(project_dir)
    for k in range(1, _rounds(project_dir) + 1):
        seppo_round(k, project_dir)
    evaluate(project_dir)
    return report(project_dir)
