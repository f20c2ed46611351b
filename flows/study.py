"""The `seppo study` flow: the ablation matrix as DVC experiments, startable from the Prefect UI.

The flow calls the same command as the CLI (`seppo study` in the project), so a study started from
the UI and one started from a shell are the same runs, the same records and the same resumption: a
flow run that crashed or was cancelled, started again, finishes only the missing runs. It then
publishes the final-round aggregate as a table artifact `seppo-study` and the Markdown summary as
`seppo-study-report`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.pipeline import _bin, _run
from seppo import layout as L

STUDY_KEY = "seppo-study"
STUDY_REPORT_KEY = "seppo-study-report"


@task(retries=1, retry_delay_seconds=30)
def run_study_command(project_dir: str, jobs: int, only: list[str], aggregate_only: bool, replan: bool,
                      submit: bool = False) -> str:
    """`seppo study`: a retry resumes (finished runs are skipped by their records). ``submit``: the missing runs go
    to the seppo-study work pool (one flow run each, on any machine with a worker), are waited for and collected."""
    cmd = [_bin("seppo"), "study"]
    if submit:
        cmd += ["--submit", "--wait"]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    for v in only:
        cmd += ["--only", v]
    if aggregate_only:
        cmd.append("--aggregate-only")
    if not replan:
        cmd.append("--no-replan")
    return _run(cmd, project_dir)


@task
def publish_study(project_dir: str, out: str = L.STUDY) -> dict:
    root = Path(project_dir) / out
    published = {}
    table = root / "aggregate.csv"
    if table.exists():
        with table.open() as f:
            rows = list(csv.DictReader(f))
        if rows:
            last = max(int(r["round"]) for r in rows)
            rows = [r for r in rows if int(r["round"]) in (0, last)]
            create_table_artifact(table=rows, key=STUDY_KEY, description=f"Study: round {last} (and theta_0), "
                                  "mean over seeds and prompts, two-level 95% CIs, paired differences")
            published["table"] = len(rows)
    md = root / "aggregate.md"
    if md.exists():
        create_markdown_artifact(markdown=md.read_text(), key=STUDY_REPORT_KEY, description="Ablation study")
        published["markdown"] = True
    return published


@flow(name="seppo-study")
def seppo_study(project_dir: str = ".", jobs: int = 0, only: list[str] | None = None,
                aggregate_only: bool = False, replan: bool = True, submit: bool = False) -> dict:
    """Variants x training seeds of params.study as DVC experiments, resumable; then the aggregate.

    ``jobs`` 0 = study.jobs (<= 2 on a 2-core machine); ``only`` restricts to some variants;
    ``aggregate_only`` recomputes the tables and figures from the committed per-run records;
    ``submit`` spreads the missing runs over the machines of the seppo-study work pool (docs/scale.md).
    """
    project_dir = str(Path(project_dir).resolve())
    if submit and (jobs or only):
        raise ValueError("submit runs every missing run of the matrix on the work pool: jobs / only do not apply")
    run_study_command(project_dir, jobs, only or [], aggregate_only, replan, submit)
    return publish_study(project_dir)
