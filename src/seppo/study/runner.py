"""`seppo study`: every (variant, training seed) of params.study as a DVC experiment, resumable.

Each run is `dvc exp run --temp --name <variant>__seed<k> -S train.*=... <target>`: DVC copies the
workspace into a temporary folder, checks the outputs of unchanged stages out of the cache and
skips them (world, base_model, ingest, validate, cache, scorer_model and eval_base are computed
once, in the workspace's `dvc repro`), runs the rounds and the evaluation, and stores the result
as an experiment ref (`dvc exp show`). The record is then read from that experiment's commit
(`git show <ref>:reports/eval/scores.parquet`, reports/metrics/round_k.json) and written to
reports/study/runs/<variant>__seed<k>.json. A run whose record exists with the same params hash
is skipped, so a killed study, re-run, finishes only what is missing.

``study.shared`` pins the shared stages' recipe (theta_0, the scorer) where the study's differs from the
default pipeline's: every run sets those keys too, and before the variants one experiment computes the
shared stages with every core (their bits depend on the torch thread count), so each run then restores
them from DVC's run cache instead of training theta_0 again with fewer threads.

At most ``study.jobs`` experiments run at once (DVC allows concurrent --temp runs: each has its
own folder; the cache is shared); each gets cpu_count / jobs torch threads.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Params, parse_params
from ..io_utils import atomic_path, write_json
from .records import Run, build_record, is_done, plan_runs, record_path
from .. import layout as L
from ..layout import Layout

DVC_YAML_BACKUP = ".dvc/tmp/seppo-study-dvc.yaml.orig"


class StudyError(RuntimeError):
    """A run that failed; the message names the run, the command and where its log is."""


def _bin(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def _git(root: Path, *args: str, text: bool = True) -> Any:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=text)
    if out.returncode != 0:
        raise StudyError(f"git {' '.join(args)} failed in {root}: {out.stderr}")
    return out.stdout


def _set_value(v: Any) -> str:
    """A `-S key=value` value: strings as they are, everything else as JSON (DVC parses both)."""
    return v if isinstance(v, str) else json.dumps(v)


SHARED_RUN = "study-shared"


def shared_stages(params: Params) -> list[str]:
    """The stages of the study's graph (upstream of study.target) that neither read a train.* key nor
    consume a stage that does: computed once and shared by every run (world ... cache, scorer_model, eval_base)."""
    from ..planning.dvc import build

    stages = build(params)["stages"]
    producer = {(o if isinstance(o, str) else next(iter(o))): n for n, st in stages.items() for o in st.get("outs", [])}

    def parents(name: str) -> set[str]:
        return {n for dep in stages[name].get("deps", []) for out, n in producer.items()
                if dep == out or dep.startswith(out + "/")}

    graph, todo = set(), [params.study.target]
    while todo:
        name = todo.pop()
        if name not in graph:
            graph.add(name)
            todo += sorted(parents(name))
    shared: list[str] = []
    for name in (n for n in stages if n in graph):  # dvc.yaml lists upstream stages first
        if not any(str(k).split(".")[0] == "train" for k in stages[name].get("params", [])) \
                and parents(name) <= set(shared):
            shared.append(name)
    return shared


def _set_args(overrides: dict[str, Any]) -> list[str]:
    # ++ (hydra's add-or-override): plain `-S k=v` fails when params.yaml does not list k (a default)
    return [a for k, v in sorted(overrides.items()) for a in ("-S", f"++{k}={_set_value(v)}")]


def shared_command(params: Params) -> list[str] | None:
    """The experiment that computes the pinned shared stages once (None when study.shared is empty)."""
    if not params.study.shared:
        return None
    return [_bin("dvc"), "exp", "run", "--temp", "--name", SHARED_RUN, *_set_args(params.study.shared),
            *shared_stages(params)]


def exp_command(run: Run, target: str, mode: str = "--temp") -> list[str]:
    """The run's `dvc exp run`; mode --queue for DVC's queue (`dvc queue start -j N` on more workers)."""
    # no --force: for `exp run` it also means "reproduce unchanged stages", which would redo the shared ones
    return [_bin("dvc"), "exp", "run", mode, "--name", run.name, *_set_args(run.overrides), target]


def plan_branches(runs: list[Run]) -> dict[str, Any]:
    """train.* settings under which the one dvc.yaml every run shares must be planned: a stage declares some keys
    only under some settings (stages.conditional_reads), and a run sets them with -S on that plan. Planned without
    them, refsamples would not declare train.criterion, and a `reward` run would restore the reference samples of
    a `none` run from DVC's run cache, without their reward scores."""
    crits = {r.overrides.get("train.criterion") for r in runs}
    out: dict[str, Any] = {}
    if "reward" in crits:
        out["criterion"] = "reward"  # its reads include the oracle criteria's
    elif crits & {"oracle", "oracle_drop"}:
        out["criterion"] = "oracle"
    if any(r.overrides.get("train.reference_errors") == "precomputed" for r in runs):
        out["reference_errors"] = "precomputed"
    return out


@contextlib.contextmanager
def planned_rounds(root: Path, params: Params, rounds: int, replan: bool,
                   branches: dict[str, Any] | None = None) -> Iterator[None]:
    """dvc.yaml planned for the study's rounds while the study runs; the original restored afterwards."""
    from ..planning.dvc import render

    if not replan:
        yield
        return
    data = parse_params(params.model_dump() | {"train": params.train.model_dump() | (branches or {})
                                               | {"rounds": rounds}})
    with planned_file(root, "dvc.yaml", render(data), DVC_YAML_BACKUP):
        yield


@contextlib.contextmanager
def planned_file(root: Path, rel: str, text: str, backup_rel: str) -> Iterator[None]:
    """``rel`` (a dvc.yaml) holds ``text`` while the study's runs start; the original restored afterwards.

    The original is backed up once under .dvc/tmp (ignored by git): a study killed here leaves the
    backup, and the re-run restores from it, never from the study's own plan.
    """
    dvc_yaml, backup = root / rel, root / backup_rel
    if not backup.exists() and dvc_yaml.exists():
        backup.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(backup) as tmp:
            tmp.write_bytes(dvc_yaml.read_bytes())
    if not dvc_yaml.exists() or dvc_yaml.read_text() != text:
        with atomic_path(dvc_yaml) as tmp:
            tmp.write_text(text)
    try:
        yield
    finally:
        if backup.exists():
            with atomic_path(dvc_yaml) as tmp:
                tmp.write_bytes(backup.read_bytes())
            backup.unlink()


def _experiment_rev(root: Path, name: str) -> str:
    """The commit of the experiment called ``name``: on this baseline (HEAD) if there is one, else the
    newest on any baseline (the repository may have moved on while a study ran; the caller checks
    that its params match the run's)."""
    head = _git(root, "rev-parse", "HEAD").strip()
    lines = _git(root, "for-each-ref", "--sort=-creatordate", "--format=%(refname) %(objectname)",
                 "refs/exps").splitlines()
    found = [ln.split() for ln in lines if ln.split() and ln.split()[0].endswith(f"/{name}")]
    if not found:
        raise StudyError(f"no experiment named {name} in {root} (git refs/exps)")
    here = [sha for ref, sha in found if ref == f"refs/exps/{head[:2]}/{head[2:]}/{name}"]
    return here[0] if here else found[0][1]


def finished_experiment(root: Path, run: Run, section: str = "study") -> str | None:
    """The rev of an experiment named like the run, on this baseline, made with the same params; else None.

    This collects runs that finished without a record (killed in between) and runs queued elsewhere
    (`dvc exp run --queue --name <variant>__seed<k>` on more workers) instead of running them again.
    """
    import yaml

    from .records import SECTIONS, effective_hash, with_legacy_values

    try:
        rev = _experiment_rev(root, run.name)
    except StudyError:
        return None
    raw = _read_at(root, rev, "params.yaml")
    try:
        current = yaml.safe_load((root / "params.yaml").read_text()) or {}
        made_with = parse_params(with_legacy_values(yaml.safe_load(raw or b"") or {}, current))
    except Exception:  # noqa: BLE001 - params another version of the code wrote: not this run
        return None
    return rev if effective_hash(made_with, {}, SECTIONS[section][0]) == run.params_hash else None


def _drop_stale_experiment(root: Path, name: str, env: dict) -> None:
    """An experiment of this name made with other params is removed, so that the new one can take the name."""
    try:
        _experiment_rev(root, name)
    except StudyError:
        return
    subprocess.run([_bin("dvc"), "exp", "remove", name], cwd=root, env=env, capture_output=True, check=True)


def _read_at(root: Path, rev: str, path: str) -> bytes | None:
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True)
    return out.stdout if out.returncode == 0 else None


def collect(root: Path, run: Run, label: str, rounds: int, rev: str, wall_s: float | None,
            section: str = "study") -> dict:
    """The record of a finished experiment, read from its commit."""
    if section == "video_study":
        from . import video

        exp = {"name": run.name, "rev": rev, "wall_s": None if wall_s is None else round(wall_s, 1),
               "machine": machine_type()}
        try:
            return video.collect(lambda path: _read_at(root, rev, path), run, label, rounds, exp)
        except ValueError as err:
            raise StudyError(str(err)) from None
    raw = _read_at(root, rev, L.EVAL_SCORES)
    if raw is None:
        raise StudyError(f"{run.name}: experiment {rev[:10]} has no reports/eval/scores.parquet")
    scores = pd.read_parquet(io.BytesIO(raw))
    rm = {}
    for k in range(1, rounds + 1):
        b = _read_at(root, rev, str(Layout().metrics(k)))
        if b is not None:
            rm[k] = json.loads(b)
    exp = {"name": run.name, "rev": rev, "wall_s": None if wall_s is None else round(wall_s, 1),
           "machine": machine_type()}
    return build_record(run, label, scores, rm, exp)


def machine_type() -> str:
    """What decides the bits of a CPU run besides the params: the CPU model, whether it has AVX-512 (torch's
    kernels differ), the core count and torch's version (e.g. 'Intel(R) Xeon(R) Processor, AVX-512, 2 cores,
    torch 2.13.0')."""
    import platform

    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    import torch

    isa = "AVX-512" if " avx512f" in flags else "no AVX-512"
    return f"{model}, {isa}, {os.cpu_count()} cores, torch {torch.__version__}"


DVC_LOCK_BUSY = "Unable to acquire lock"
LOCK_RETRIES, LOCK_WAIT_S = 5, 15.0


def _execute(root: Path, name: str, cmd: list[str], threads: int | None, log_dir: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = log_dir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_experiment(root, name, env)
    t0 = time.monotonic()
    for attempt in range(LOCK_RETRIES + 1):
        with log.open("w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT)
        # two `dvc exp run --temp` starting together can meet on the repository's lock for a moment (seen on
        # 2 cores): that run never started, so it is started again rather than failed
        if proc.returncode == 0 or DVC_LOCK_BUSY not in log.read_text() or attempt == LOCK_RETRIES:
            break
        time.sleep(LOCK_WAIT_S * (attempt + 1))
    if proc.returncode != 0:
        tail = log.read_text()[-1500:]
        raise StudyError(f"{name}: `{' '.join(cmd[1:4])} ...` exited {proc.returncode}; log {log}:\n{tail}")
    return time.monotonic() - t0


VIDEO_YAML, VIDEO_YAML_BACKUP = "video/dvc.yaml", ".dvc/tmp/seppo-study-video-dvc.yaml.orig"


def _groups(root: Path, params: Params, section: str, rounds: int, replan: bool, todo: list[Run]
            ) -> list[tuple[contextlib.AbstractContextManager, list[Run]]]:
    """(plan, runs) in the order they run. The image study: one plan (dvc.yaml at the study's rounds) for every
    run. The video study: one plan per arm (video/dvc.yaml holds the arm's stages only), so the runs of one arm run
    together and the next arm's plan is written once they have finished (a run's copy of the workspace is taken
    when it starts)."""
    if section == "study":
        return [(planned_rounds(root, params, rounds, replan, plan_branches(todo)), todo)]
    from . import video

    arms: dict[str, list[Run]] = {}
    for r in todo:
        arms.setdefault(video.run_arm(r), []).append(r)
    out = []
    for arm, runs in arms.items():
        plan = planned_file(root, VIDEO_YAML, video.plan_text(params, arm, rounds, plan_branches(runs)),
                            VIDEO_YAML_BACKUP) if replan else contextlib.nullcontext()
        out.append((plan, runs))
    return out


def run_study(root: Path = Path("."), params: Params | None = None, jobs: int | None = None,
              only: list[str] | None = None, replan: bool = True,
              echo: Callable[[str], None] = print, seeds: list[int] | None = None, section: str = "study") -> dict:
    """Run what is missing of the matrix, then aggregate. Returns what ran, what was skipped.

    ``section``: "study" (the image study, dvc.yaml) or "video_study" (the video arms, video/dvc.yaml)."""
    from .aggregate import run_aggregate
    from .video import run_video_aggregate
    from ..config import load_params

    root = Path(root).resolve()
    params = params or load_params(root / "params.yaml")
    st = getattr(params, section)
    if section == "video_study":
        from ..config import video_study_conflicts

        bad = video_study_conflicts(params)
        if bad:
            raise StudyError("the video study cannot run as planned:\n  " + "\n  ".join(bad))
    out = root / st.out
    runs = [r for r in plan_runs(params, section) if (not only or r.variant in only) and (not seeds or r.seed in seeds)]
    unknown = sorted(set(only or []) - set(st.variants))
    if unknown:
        raise StudyError(f"--only names unknown variants {unknown}; variants: {sorted(st.variants)}")
    todo = [r for r in runs if not is_done(out, r)]
    skipped = [r.name for r in runs if r not in todo]
    echo(f"{section}: {len(runs)} runs, {len(skipped)} already done, {len(todo)} to run, jobs {jobs or st.jobs}")
    jobs = jobs or st.jobs
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    log_dir = root / ".dvc" / "tmp" / "study-logs"

    def one(run: Run) -> str:
        rev, wall = finished_experiment(root, run, section), None
        if rev:
            echo(f"{section}: {run.name} collected from finished experiment {rev[:10]}")
        else:
            echo(f"{section}: {run.name} started")
            wall = _execute(root, run.name, exp_command(run, st.target), threads, log_dir)
            rev = _experiment_rev(root, run.name)
        rec = collect(root, run, st.variants[run.variant].label, st.rounds, rev, wall, section)
        write_json(record_path(out, run), rec)
        echo(f"{section}: {run.name} recorded" + (f" ({wall:.0f} s)" if wall else ""))
        return run.name

    done: list[str] = []
    failed: list[str] = []
    for plan, group in (_groups(root, params, section, st.rounds, replan, todo) if todo else []):
        # a failing run does not stop the others (their records are kept); all failures are raised at the end
        with plan, ThreadPoolExecutor(jobs) as pool:
            shared = shared_command(params) if section == "study" else None
            if shared:
                echo(f"study: shared stages ({', '.join(st.shared)}) computed once, every core")
                wall = _execute(root, SHARED_RUN, shared, None, log_dir)
                echo(f"study: shared stages ready ({wall:.0f} s)")
            futures = [(r, pool.submit(one, r)) for r in group]
            for r, f in futures:
                try:
                    done.append(f.result())
                except Exception as err:  # noqa: BLE001 - reported with the run's name below
                    failed.append(f"{r.name}: {err}")
    agg = run_aggregate(params, root) if section == "study" else run_video_aggregate(params, root)
    if failed:
        raise StudyError(f"{len(failed)} of {len(todo)} runs failed (re-run the study to retry only "
                         "them):\n" + "\n".join(failed))
    return {"ran": done, "skipped": skipped, **agg}


def queue_commands(params: Params, root: Path = Path(".")) -> list[str]:
    """Shell lines that queue the missing runs in DVC's experiment queue instead of running them here.

    For a machine with more workers: run them (after `seppo plan --set train.rounds=<study.rounds>`),
    `dvc queue start -j N`, then `seppo study` collects the finished experiments without re-running them.
    """
    import shlex

    out = Path(root) / params.study.out
    missing = [exp_command(r, params.study.target, "--queue") for r in plan_runs(params) if not is_done(out, r)]
    shared = shared_command(params) if missing else None
    # the pinned shared stages first, in this process with every core; the queued runs restore them
    return [" ".join(shlex.quote(c) for c in ["dvc", *cmd[1:]]) for cmd in ([shared] if shared else []) + missing]
