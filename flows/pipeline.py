"""Prefect 3 flows over the DVC pipeline: DVC stays the single source of truth for what is stale.

Tasks call `dvc repro <stage>` in the workspace. A run that carries params overrides is instead an
isolated DVC experiment: the overrides are validated against seppo.config first (flows/overrides.py),
then `dvc exp run --temp` reproduces in a temporary copy, so the workspace (params.yaml, dvc.lock,
data, models, reports) is never written; promote a result with `dvc exp apply` / `dvc exp branch`.
Each flow publishes a table artifact of the metrics and a Markdown artifact of the report: under
seppo-metrics / seppo-report for the workspace, seppo-metrics-<exp> / seppo-report-<exp> for an
experiment (read from the experiment's commit). Commands stream their output into the run log as
they run (flows/runner.py), which also holds the one retry policy (is_retryable).

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
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import overrides as overrides_mod
from flows.runner import CommandFailed, retry_condition, stream, tool_env
from seppo import layout as L
from seppo.io_utils import atomic_path

PREP_STAGES = ["world", "base_model", "base_samples", "ingest", "validate", "cache"]
METRICS_KEY = "seppo-metrics"
REPORT_KEY = "seppo-report"
VIDEO_DVC = "video/dvc.yaml"
VIDEO_METRICS_KEY = "seppo-video-metrics"
VIDEO_REPORT_KEY = "seppo-video-report"
VIDEO_PREP = ["video_cache"]  # with its upstream: world, base_model, video_world, video_base, video_ingest


def _bin(name: str) -> str:
    """A tool from the interpreter's own environment (the project's .venv), else from PATH."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def _run(cmd: list[str], cwd: str, extra_env: dict[str, str] | None = None, on_line=None) -> str:
    """Run a (long) command with its output streamed line by line into the run's log."""
    logger = _logger()
    logger.info("$ %s  (in %s)", " ".join(cmd), cwd)
    return stream(cmd, cwd, logger.info, extra_env, on_line)


def _logger():
    """The run's logger (lines reach the Prefect UI); a plain logger when called outside a run."""
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - prefect's MissingContextError: a task's .fn called directly
        import logging

        return logging.getLogger("flows")


def _quiet(cmd: list[str], cwd: str) -> str:
    """A short query (dvc status --json, git rev-parse): stdout only, nothing logged."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandFailed(cmd, proc.returncode, (proc.stdout + proc.stderr)[-2000:])
    return proc.stdout


RETRY = dict(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_condition)


@task(**RETRY)
def plan(project_dir: str) -> None:
    """Regenerate dvc.yaml from params.yaml (the number of rounds shapes the graph)."""
    _run([_bin("seppo"), "plan"], project_dir)


@task(**RETRY, task_run_name="dvc repro {stages}")
def dvc_repro(stages: list[str], project_dir: str) -> None:
    """Reproduce stages and what they depend on; a no-op where DVC finds nothing stale."""
    _run([_bin("dvc"), "repro", *stages], project_dir)


def _planned_dvc_yaml(overrides: dict[str, Any], project_dir: str) -> bytes | None:
    """dvc.yaml as params + overrides would plan it, or None when that is today's dvc.yaml."""
    import tempfile

    import yaml

    from seppo.config import parse_params
    from seppo.planning.dvc import write

    data = overrides_mod.apply(yaml.safe_load((Path(project_dir) / "params.yaml").read_text()) or {}, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dvc.yaml"
        write(parse_params(data, "overrides"), out)
        planned = out.read_bytes()
    return None if planned == (Path(project_dir) / "dvc.yaml").read_bytes() else planned


@task(**RETRY, task_run_name="dvc exp run --temp {name}")
def dvc_exp_run(set_args: list[str], name: str, planned: bytes | None, project_dir: str) -> str:
    """Run the pipeline as the DVC experiment ``name`` in a temporary copy of the workspace.

    ``dvc exp run --temp`` copies HEAD plus the workspace's uncommitted changes into
    .dvc/tmp/exps/, applies the ``-S`` overrides there and reproduces there; the workspace's
    params.yaml, dvc.lock and outputs are never written. When the overrides re-shape the graph
    (``planned``), that dvc.yaml is put in the workspace only until DVC has taken its copy (its
    "Reproducing experiment" line), and restored in any case; the deployment's concurrency limit
    keeps another run from starting in that window. Returns the experiment's commit.
    """
    ws_yaml = Path(project_dir) / "dvc.yaml"
    original, mode = ws_yaml.read_bytes(), ws_yaml.stat().st_mode

    def put(data: bytes) -> None:
        with atomic_path(ws_yaml) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(mode)

    def restore(line: str | None = None) -> None:
        if planned is not None and (line is None or line.startswith("Reproducing experiment")):
            if ws_yaml.read_bytes() != original:
                put(original)

    if planned is not None:
        put(planned)
    try:
        cmd = [_bin("dvc"), "exp", "run", "--temp", "--name", name]
        for arg in set_args:
            cmd += ["-S", arg]
        _run(cmd, project_dir, on_line=restore)
    finally:
        restore()
    rev = experiment_rev(name, project_dir)
    if rev is None:
        raise RuntimeError(f"dvc exp run finished but no experiment {name!r} on this commit (dvc exp show)")
    return rev


def experiment_rev(name: str, project_dir: str) -> str | None:
    """The commit of experiment ``name`` based on HEAD (refs/exps/<baseline>/<name>), if any."""
    head = _quiet(["git", "rev-parse", "HEAD"], project_dir).strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    out = _quiet(["git", "for-each-ref", "--format=%(objectname)", ref], project_dir).strip()
    return out or None


def artifact_key(base: str, experiment: str | None) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    if not experiment:
        return base
    return f"{base}-{re.sub(r'[^a-z0-9-]+', '-', experiment.lower()).strip('-')}"


def _read(path: str, project_dir: str, rev: str | None) -> str | None:
    """A file of the workspace, or of an experiment's commit (git- or DVC-tracked alike)."""
    if rev is None:
        p = Path(project_dir) / path
        return p.read_text() if p.exists() else None
    import dvc.api

    try:
        return dvc.api.read(path, repo=project_dir, rev=rev)
    except Exception:  # noqa: BLE001 - not produced by this experiment (e.g. a stages-only graph)
        return None


@task
def publish_artifacts(project_dir: str, experiment: str | None = None, rev: str | None = None) -> dict:
    """A table artifact of the metrics and a Markdown artifact of the report.

    Without an experiment: from the workspace, under the stable keys seppo-metrics / seppo-report.
    With one: from the experiment's commit, under seppo-metrics-<name> / seppo-report-<name>.
    """
    published = {}
    summary = _read(L.EVAL_SUMMARY, project_dir, rev)
    where = f" (experiment {experiment})" if experiment else ""
    if summary is not None:
        rows = list(csv.DictReader(io.StringIO(summary)))
        published["table"] = create_table_artifact(
            table=rows, key=artifact_key(METRICS_KEY, experiment),
            description=f"Evaluation{where}: mean, 95% bootstrap CI and win rate vs base, per checkpoint") and len(rows)
    report_md = _read(L.REPORT_MD, project_dir, rev)
    if report_md is not None:
        create_markdown_artifact(markdown=report_md, key=artifact_key(REPORT_KEY, experiment),
                                 description=f"SePPO run report{where}")
        published["markdown"] = True
    return published


def _params(project_dir: str) -> dict:
    import yaml

    return yaml.safe_load((Path(project_dir) / "params.yaml").read_text()) or {}


def _rounds(project_dir: str) -> int:
    """train.rounds as the pipeline reads it (validated, its default from seppo.config)."""
    from seppo.config import load_params

    return load_params(Path(project_dir) / "params.yaml").train.rounds


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
    status = json.loads(_quiet([_bin("dvc"), "status", "--json", *names], project_dir) or "{}")
    return {n: stages[n]["cmd"] for n in names if n in status}


@task(**RETRY, task_run_name="{name} on a worker")
def run_stage_command(name: str, cmd: str, project_dir: str, threads: int) -> str:
    """One stage's command, as dvc.yaml states it; threads split the machine between workers."""
    _run(shlex.split(cmd), project_dir, {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return name


@task(**RETRY)
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
    """The whole pipeline. With ``overrides`` (params keys -> values) it runs as an isolated DVC experiment.

    Overrides are validated against seppo.config first: a bad key or value fails the run at once
    (BadOverrides, never retried) and nothing runs. A valid set runs with ``dvc exp run --temp``,
    so the workspace is untouched; artifacts are published from the experiment under its name.
    ``stages`` restricts a run without overrides to those stages (and what they depend on);
    ``replan`` regenerates dvc.yaml from params first (off only for projects with their own dvc.yaml).
    """
    project_dir = str(Path(project_dir).resolve())
    if overrides:
        set_args = overrides_mod.validate(overrides, Path(project_dir) / "params.yaml")
        name = overrides_mod.check_experiment_name(experiment_name or _default_experiment_name())
        if experiment_rev(name, project_dir) is not None:
            raise overrides_mod.BadOverrides(
                f"experiment {name!r} already exists on this commit: pick another experiment_name "
                f"(or `dvc exp remove {name}`)")
        planned = _planned_dvc_yaml(overrides, project_dir) if replan else None
        rev = dvc_exp_run(set_args, name, planned, project_dir)
        get_run_logger().info("experiment %s = %s; promote with `dvc exp apply %s` or `dvc exp branch %s <branch>`",
                              name, rev[:8], name, name)
        return {"experiment": name, "rev": rev, **publish_artifacts(project_dir, name, rev)}
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


def video_round_stages(project_dir: str) -> list[list[str]]:
    """The video graph's rounds in order, one list of stages per (arm, round), from video/dvc.yaml itself."""
    stages = yaml.safe_load((Path(project_dir) / VIDEO_DVC).read_text())["stages"]
    groups: dict[tuple[str, int], list[str]] = {}
    for name in stages:
        m = re.fullmatch(r"(video_(?:[a-z]+_)?)(select|refsamples|train)_(\d+)", name)
        if m:
            groups.setdefault((m.group(1), int(m.group(3))), []).append(f"{VIDEO_DVC}:{name}")
    return [groups[k] for k in sorted(groups, key=lambda k: (k[1], k[0]))]


@task
def publish_video_artifacts(project_dir: str) -> dict:
    """The video evaluation summary (table) and report (Markdown), under seppo-video-metrics / seppo-video-report."""
    published = {}
    summary = _read(L.VIDEO_EVAL_SUMMARY, project_dir, None)
    if summary is not None:
        rows = list(csv.DictReader(io.StringIO(summary)))
        create_table_artifact(table=rows, key=VIDEO_METRICS_KEY,
                              description="Video evaluation: mean, 95% bootstrap CI, difference and win rate vs base")
        published["table"] = len(rows)
    report_md = _read(L.VIDEO_REPORT_MD, project_dir, None)
    if report_md is not None:
        create_markdown_artifact(markdown=report_md, key=VIDEO_REPORT_KEY,
                                 description="SePPO text-to-video report")
        published["markdown"] = True
    return published


@flow(name="seppo-video-pipeline")
def seppo_video_pipeline(project_dir: str = ".", replan: bool = True) -> dict:
    """The text-to-video pipeline (video/dvc.yaml) in the workspace: preparation, each arm's rounds, clips,
    evaluation, report; every task is `dvc repro` of its stages, so a re-run does only what is stale. Variants run
    as DVC experiments from the shell: `dvc exp run video/dvc.yaml -S video.trainable=all`."""
    project_dir = str(Path(project_dir).resolve())
    if replan:
        plan(project_dir)
    dvc_repro([f"{VIDEO_DVC}:{s}" for s in VIDEO_PREP], project_dir)
    for stages in video_round_stages(project_dir):
        dvc_repro(stages, project_dir)
    dvc_repro([f"{VIDEO_DVC}:video_evaluate"], project_dir)
    dvc_repro([f"{VIDEO_DVC}:video_report"], project_dir)
    return publish_video_artifacts(project_dir)


def _default_experiment_name() -> str:
    """exp-<the flow run's name>, e.g. exp-crimson-otter: unique enough and findable in both UIs."""
    from prefect.runtime import flow_run

    return f"exp-{flow_run.name or 'run'}"
