"""Prefect 3 flows over the DVC pipeline: DVC stays the single source of truth for what is stale.

Tasks call `dvc repro <stage>` (or `dvc exp run` when a run carries params overrides, so a run
started from the Prefect UI with new values is recorded as a DVC experiment, not lost). Each flow
publishes a table artifact of the metrics and a Markdown artifact of the report under stable keys.

Flows: `prep` (world, base model, ingest, validate, cache), `seppo_round` (select, reference
samples, train for one round), `select`, `evaluate`, `report`, and `seppo_pipeline` (all of them).
"""

from __future__ import annotations

import csv
import json
import os
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


def _run(cmd: list[str], cwd: str) -> str:
    logger = get_run_logger()
    logger.info("$ %s  (in %s)", " ".join(cmd), cwd)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
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


@task
def plan_with_overrides(overrides: dict[str, Any], project_dir: str) -> None:
    """When overrides change the number of rounds, the graph must be re-planned first."""
    if "train.rounds" in overrides:
        _run([_bin("seppo"), "plan", "--set", f"train.rounds={overrides['train.rounds']}"], project_dir)


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


def _rounds(project_dir: str) -> int:
    import yaml

    params = yaml.safe_load((Path(project_dir) / "params.yaml").read_text()) or {}
    return int(params.get("train", {}).get("rounds", 3))


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
