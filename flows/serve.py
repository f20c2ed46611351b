"""Serve the pipeline and the study as Prefect deployments, so runs can be started from the UI or the CLI.

    prefect server start --host 127.0.0.1 --port 4200          # terminal 1 (local only)
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.serve                                       # terminal 2, from the project root
    prefect deployment run 'seppo-pipeline/seppo' -p overrides='{"train.lr": 3e-5}'
    prefect deployment run 'seppo-study/seppo' -p jobs=1            # the ablation study (resumable)
    prefect deployment run 'seppo-video-pipeline/seppo'             # the text-to-video pipeline

A run with `overrides` is an isolated DVC experiment (`dvc exp run --temp`; the workspace is left
byte-identical; see `dvc exp show`); without, it is `dvc repro` in the workspace. The deployment
runs one flow run at a time (a Prefect deployment concurrency limit of 1): a second UI run waits in
AwaitingConcurrencySlot until the first ends, so two runs never race on dvc.lock or the DVC cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.pipeline import seppo_pipeline, seppo_video_pipeline
from flows.study import seppo_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="seppo", help="Deployment name.")
    ap.add_argument("--project-dir", default=str(Path(".").resolve()), help="The DVC project to run in.")
    ap.add_argument("--no-replan", action="store_true", help="Keep the project's own dvc.yaml.")
    args = ap.parse_args()
    pipeline = seppo_pipeline.to_deployment(
        name=args.name,
        parameters={"overrides": {}, "experiment_name": None, "stages": None, "project_dir": args.project_dir,
                    "replan": not args.no_replan},
        description="SePPO pipeline over DVC; overrides (params key -> value) run as an isolated DVC experiment.",
        tags=["seppo"],
        # one run at a time; later runs wait for the slot (ENQUEUE), they are not cancelled
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
    )
    study = seppo_study.to_deployment(
        name=args.name,
        parameters={"project_dir": args.project_dir, "jobs": 0, "only": [], "aggregate_only": False,
                    "replan": not args.no_replan, "submit": False},
        description="The ablation study (params.study): variants x seeds as DVC experiments, resumable.",
        tags=["seppo", "study"],
    )
    video = seppo_video_pipeline.to_deployment(
        name=args.name, parameters={"project_dir": args.project_dir, "replan": not args.no_replan},
        description="The text-to-video pipeline (video/dvc.yaml): AnimateDiff arms, clips, video metrics, report.",
        tags=["seppo", "video"],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
    )
    serve(pipeline, study, video)


if __name__ == "__main__":
    main()
