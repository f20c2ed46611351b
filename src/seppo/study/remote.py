"""The study on many machines: a Prefect work pool runs the missing (variant, seed) runs, each in a worker's own clone.

    head node:  seppo study --submit [--wait]        every missing run -> a flow run of deployment seppo-study-run
    each node:  SEPPO_PROJECT_DIR=$PWD prefect worker start --pool seppo-study --type process --limit 1
    head node:  seppo study --collect                dvc exp pull the finished runs, write the records, aggregate

A flow run (`seppo_study_run`, below) works in the clone named by ``SEPPO_PROJECT_DIR`` on the worker's machine:
it checks out the study's baseline commit from the shared git remote, pulls the baseline's DVC outputs and run
cache from the shared DVC remote (so theta_0 and the other shared stages are restored, not recomputed), runs
`dvc exp run --temp` exactly as `seppo study` does on one machine, and pushes the experiment (`dvc exp push`: its
git ref to the git remote, its outputs to the DVC remote). The head node pulls it back (`dvc exp pull`) and reads
the record from the experiment's commit as before, so the records and the aggregate are the single-machine ones.

Exactly once: a submission's flow run carries an idempotency key (run name, params hash, baseline), so submitting
again returns the same flow run instead of a second one; a flow run that failed, crashed or was cancelled is
submitted again under the next attempt's key. A flow run whose experiment is already on the git remote (a worker
that died after pushing) pushes nothing and runs nothing. One flow run at a time per clone (a file lock): the clone's
dvc.yaml is planned for the run while it starts; run more clones (and workers) for more runs per machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ..config import Params, load_params
from ..io_utils import write_json
from .records import Run, is_done, plan_runs, record_path
from .runner import (DVC_YAML_BACKUP, SHARED_RUN, VIDEO_YAML_BACKUP, StudyError, _bin, _execute, _experiment_rev,
                     _groups, collect, exp_command, finished_experiment, machine_type, shared_command)

FLOW_NAME = "seppo-study-run"
ENTRYPOINT = "seppo.study.remote.seppo_study_run"  # a module path: every worker has seppo installed
POOL = "seppo-study"
PROJECT_ENV = "SEPPO_PROJECT_DIR"
LOCK = ".dvc/tmp/seppo-study-worker.lock"
# flow-run states after which a run is submitted again (the experiment never reached the remote)
RETRY_STATES = {"FAILED", "CRASHED", "CANCELLED", "CANCELLING"}
DONE_STATES = {"COMPLETED"}


def _sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise StudyError(f"`{' '.join(cmd)}` failed in {cwd}:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
    return out.stdout


def _exp_ref(baseline: str, name: str) -> str:
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def on_remote(root: Path, git_remote: str, baseline: str, names: list[str]) -> set[str]:
    """The runs (by name) whose experiment on this baseline is on the git remote."""
    if not names:
        return set()
    out = _sh(["git", "ls-remote", git_remote, f"refs/exps/{baseline[:2]}/{baseline[2:]}/*"], root)
    refs = {line.split()[1] for line in out.splitlines() if line.split()}
    return {n for n in names if _exp_ref(baseline, n) in refs}


def _pull_experiment(root: Path, git_remote: str, name: str) -> None:
    _sh([_bin("dvc"), "exp", "pull", "--force", git_remote, name], root)


@contextlib.contextmanager
def _clone_lock(root: Path) -> Iterator[None]:
    path = root / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _find_run(params: Params, section: str, variant: str, seed: int, params_hash: str) -> Run:
    for r in plan_runs(params, section):
        if r.variant == variant and r.seed == seed:
            if r.params_hash != params_hash:
                raise StudyError(f"{r.name}: this clone's params hash to {r.params_hash}, the submission's to "
                                 f"{params_hash}: not the same study")
            return r
    raise StudyError(f"{section} plans no run {variant} seed {seed} at this baseline")


def prepare_clone(root: Path, baseline: str, git_remote: str) -> None:
    """The clone at the study's baseline with its DVC outputs and run cache (the shared stages' results)."""
    # a worker's clone is its own: a plan a killed run left in dvc.yaml is discarded with its backup (restoring
    # that backup later would bring back another baseline's dvc.yaml)
    for backup in (DVC_YAML_BACKUP, VIDEO_YAML_BACKUP):
        (root / backup).unlink(missing_ok=True)
    _sh(["git", "fetch", "-q", git_remote], root)
    _sh(["git", "checkout", "-q", "--force", "--detach", baseline], root)
    _sh([_bin("dvc"), "pull", "-q", "--force", "--run-cache", "--allow-missing"], root)


@flow(name=FLOW_NAME, retries=1, retry_delay_seconds=30)
def seppo_study_run(variant: str, seed: int, params_hash: str, baseline: str, section: str = "study",
                    git_remote: str = "origin", threads: int = 0, replan: bool = True,
                    project_dir: str | None = None) -> dict:
    """One (variant, seed) of a study in this worker's clone (SEPPO_PROJECT_DIR): checkout, pull, `dvc exp run`,
    `dvc exp push`. A retry, or a second flow run of the same run, finds the pushed experiment and runs nothing."""
    log = get_run_logger()
    where = project_dir or os.environ.get(PROJECT_ENV)
    if not where:
        raise StudyError(f"no project clone: start the worker with {PROJECT_ENV}=<its clone of the project>")
    root = Path(where).resolve()
    with _clone_lock(root):
        prepare_clone(root, baseline, git_remote)
        params = load_params(root / "params.yaml")
        run = _find_run(params, section, variant, seed, params_hash)
        st = getattr(params, section)
        if run.name in on_remote(root, git_remote, baseline, [run.name]):
            _pull_experiment(root, git_remote, run.name)
            if finished_experiment(root, run, section):
                log.info("%s: already on %s, nothing to run", run.name, git_remote)
                return {"name": run.name, "ran": False, "machine": machine_type()}
        # planned as on one machine for the whole matrix (its conditional reads), so every worker's run of this
        # baseline sees the stage definitions, and DVC run-cache keys, the others see
        plan = next(pl for pl, group in _groups(root, params, section, st.rounds, replan, plan_runs(params, section))
                    if run in group)
        log.info("%s: dvc exp run in %s (%s)", run.name, root, machine_type())
        with plan:
            wall = _execute(root, run.name, exp_command(run, st.target), threads or None,
                            root / ".dvc" / "tmp" / "study-logs")
        rev = _experiment_rev(root, run.name)
        _sh([_bin("dvc"), "exp", "push", "--force", git_remote, run.name], root)
        log.info("%s: pushed %s (%.0f s)", run.name, rev[:10], wall)
        return {"name": run.name, "rev": rev, "wall_s": round(wall, 1), "ran": True, "machine": machine_type()}


# ---- the head node: submit, wait, collect ----

def _baseline(root: Path, git_remote: str) -> str:
    """HEAD, clean and on the git remote: the commit every worker checks out."""
    dirty = _sh(["git", "status", "--porcelain", "--untracked-files=no"], root).strip()
    if dirty:
        raise StudyError(f"{root}: uncommitted changes ({dirty.splitlines()[0]} ...): the workers run the "
                         "committed baseline; commit and push first")
    head = _sh(["git", "rev-parse", "HEAD"], root).strip()
    _sh(["git", "fetch", "-q", git_remote], root)
    if not _sh(["git", "branch", "-r", "--contains", head], root).strip():
        raise StudyError(f"{root}: HEAD {head[:10]} is not on git remote {git_remote}: `git push {git_remote}` first")
    return head


def ensure_deployment(pool: str = POOL, name: str = "seppo") -> str:
    """The work pool (type process) and the seppo-study-run deployment on it; returns '<flow>/<deployment>'."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as c:
        try:
            c.read_work_pool(pool)
        except ObjectNotFound:
            c.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                              base_job_template=ProcessWorker.get_default_base_job_template()))
        flow_id = c.create_flow_from_name(FLOW_NAME)
        c.create_deployment(flow_id=flow_id, name=name, work_pool_name=pool, entrypoint=ENTRYPOINT, pull_steps=[],
                            parameter_openapi_schema=parameter_schema(seppo_study_run).model_dump_for_openapi(),
                            description="One (variant, seed) of `seppo study --submit`, in the worker's clone "
                            f"({PROJECT_ENV}), pushed to the shared git and DVC remotes.", tags=["seppo", "study"])
    return f"{FLOW_NAME}/{name}"


def _submit_one(deployment: str, run: Run, params: dict, key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as c:
        for attempt in range(100):
            fr = run_deployment(deployment, parameters=params, flow_run_name=f"{run.name}-{run.params_hash[:8]}",
                                timeout=0, as_subflow=False, idempotency_key=f"{key}#{attempt}")
            state = c.read_flow_run(fr.id).state
            if state is None or state.type.value not in RETRY_STATES:
                return fr
    raise StudyError(f"{run.name}: 100 attempts failed")


def submit_study(root: Path, params: Params, section: str = "study", git_remote: str = "origin",
                 pool: str = POOL, deployment_name: str = "seppo", replan: bool = True, threads: int = 0,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Every run neither recorded nor on the git remote becomes a flow run (once); returns name -> flow run id."""
    root = Path(root).resolve()
    st = getattr(params, section)
    baseline = _baseline(root, git_remote)
    out = root / st.out
    todo = [r for r in plan_runs(params, section) if not is_done(out, r)]
    pushed = on_remote(root, git_remote, baseline, [r.name for r in todo])
    todo = [r for r in todo if r.name not in pushed]
    if todo and section == "study" and shared_command(params):
        # the pinned shared stages once, here with every core; the workers restore them from the pushed run cache
        wall = _execute(root, SHARED_RUN, shared_command(params), None, root / ".dvc" / "tmp" / "study-logs")
        echo(f"study: shared stages ready ({wall:.0f} s)")
    submitted: dict[str, str] = {}
    if not todo:
        echo(f"{section}: nothing to submit ({len(pushed)} finished on {git_remote}, the rest recorded)")
        return {"baseline": baseline, "submitted": submitted, "on_remote": sorted(pushed)}
    _sh([_bin("dvc"), "push", "-q", "--run-cache"], root)  # the baseline's outputs for the workers to pull
    dep = ensure_deployment(pool, deployment_name)
    for r in todo:
        fr = _submit_one(dep, r, {"variant": r.variant, "seed": r.seed, "params_hash": r.params_hash,
                                  "baseline": baseline, "section": section, "git_remote": git_remote,
                                  "threads": threads, "replan": replan},
                         f"{section}:{r.name}:{r.params_hash}:{baseline}")
        submitted[r.name] = str(fr.id)
        echo(f"{section}: {r.name} -> flow run {fr.name} ({fr.state.type.value if fr.state else 'new'})")
    echo(f"{section}: {len(submitted)} runs submitted to pool {pool}, {len(pushed)} already on {git_remote}")
    return {"baseline": baseline, "submitted": submitted, "on_remote": sorted(pushed)}


def wait_for(flow_runs: dict[str, str], echo: Callable[[str], None] = print, poll_s: float = 5.0,
             timeout_s: float | None = None) -> dict[str, str]:
    """Block until every flow run is final; returns name -> final state type."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    t0, final = time.monotonic(), {}
    with get_client(sync_client=True) as c:
        while len(final) < len(flow_runs):
            for name, fid in flow_runs.items():
                if name in final:
                    continue
                s = c.read_flow_run(UUID(fid)).state
                if s is not None and s.is_final():
                    final[name] = s.type.value
                    echo(f"study: {name} {s.type.value}")
            if len(final) < len(flow_runs):
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    raise StudyError(f"{len(flow_runs) - len(final)} flow runs not final after {timeout_s:.0f} s")
                time.sleep(poll_s)
    return final


def collect_remote(root: Path, params: Params, section: str = "study", git_remote: str = "origin",
                   echo: Callable[[str], None] = print) -> dict:
    """Pull every finished experiment of the missing runs from the remotes, write its record, then aggregate."""
    from .aggregate import run_aggregate
    from .video import run_video_aggregate

    root = Path(root).resolve()
    st = getattr(params, section)
    out = root / st.out
    head = _sh(["git", "rev-parse", "HEAD"], root).strip()
    todo = [r for r in plan_runs(params, section) if not is_done(out, r)]
    found = on_remote(root, git_remote, head, [r.name for r in todo])
    collected, missing = [], []
    for r in todo:
        if r.name not in found:
            missing.append(r.name)
            continue
        _pull_experiment(root, git_remote, r.name)
        rev = finished_experiment(root, r, section)
        if rev is None:
            missing.append(r.name)
            continue
        rec = collect(root, r, st.variants[r.variant].label, st.rounds, rev, None, section)
        write_json(record_path(out, r), rec)
        collected.append(r.name)
        echo(f"{section}: {r.name} collected from {git_remote} ({rev[:10]})")
    agg = run_aggregate(params, root) if section == "study" else run_video_aggregate(params, root)
    return {"collected": collected, "missing": missing, **agg}
