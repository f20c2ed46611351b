"""The seppo command line: one subcommand per DVC stage, each reading its own params section.

Commands only parse options and call the module that does the work; help texts are plain text
(typer prints docstrings as written), so no reStructuredText markup in them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from . import layout as L
from .config import ConfigError, Params, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The seppo command line: one subcommand per DVC stage, each reading its own params section.")
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file to read.")


@contextlib.contextmanager
def _exit_on(errors, code: int):
    """An expected failure of a stage: its message on stderr and exit `code`, no traceback."""
    try:
        yield
    except errors as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code) from None


def _params(path: Path) -> Params:
    with _exit_on(ConfigError, 2):
        return load_params(path)


def _show(metrics: dict) -> None:
    typer.echo(json.dumps(metrics, indent=2, sort_keys=True))


@contextlib.contextmanager
def _failures(stage):
    """A stage module's expected failures (``expected()``: {exception class: exit code}) as exit codes."""
    codes = stage.expected() if hasattr(stage, "expected") else {}
    try:
        yield
    except tuple(codes) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(next(c for e, c in codes.items() if isinstance(err, e))) from None


def _path(default: str, help: str, *names: str):
    return typer.Option(Path(default), *names, help=help)


METRICS = "Metrics JSON."
ROUND = typer.Option(..., "--round", "-k", min=1, help="Round k (1-based); the bank is theta_0..theta_{k-1}.")
ROOT = typer.Option(Path("."), "--root", help="Project root holding models/, data/, runs/.")
ARM = typer.Option("seppo", "--arm", help="The video arm (video.arms): seppo, sft or dpo.")


# ---- the image pipeline's stages (dvc.yaml), in pipeline order; each runs seppo/stages/<name>.py ----


@app.command()
def world(params: Path = PARAMS, out: Path = _path(L.WORLD, "Output folder of the world's data."),
          metrics: Path = _path(L.metrics("world"), METRICS)) -> None:
    """Generate Shapeland: Pick-a-Pic v2 style shards, prompts, web corpus, utility check."""
    from .stages import world as stage

    with _failures(stage):
        _show(stage.run(_params(params), out, metrics))


@app.command("base-model")
def base_model(params: Path = PARAMS, web: Path = _path(L.WORLD_WEB, "Web corpus folder (embedded source)."),
               out: Path = _path(L.BASE_MODEL, "Output diffusers folder of theta_0."),
               metrics: Path = _path(L.metrics("base_model"), METRICS)) -> None:
    """Pretrain the embedded base model, or copy base_model.source into a diffusers folder."""
    from .stages import base_model as stage

    with _failures(stage):
        _show(stage.run(_params(params), web, out, metrics))


@app.command("base-samples")
def base_samples(params: Path = PARAMS, model: Path = _path(L.BASE_MODEL, "Pipeline folder to sample."),
                 prompts: Path = _path(L.WORLD_PROMPTS, "Prompt table."),
                 world_metrics: Path = _path(L.metrics("world"), "World metrics."),
                 out: Path = _path(L.BASE_SAMPLES, "Folder of the grid and table."),
                 metrics: Path = _path(L.metrics("base_samples"), METRICS)) -> None:
    """Sample theta_0 on held-out prompts; write a captioned grid and ground-truth utilities."""
    from .stages import base_samples as stage

    with _failures(stage):
        _show(stage.run(_params(params), model, prompts, world_metrics, out, metrics))


@app.command()
def ingest(params: Path = PARAMS, out: Path = _path(L.INGEST, "Folder of winners/losers/quarantine tables."),
           metrics: Path = _path(L.metrics("ingest"), "Counts JSON.")) -> None:
    """Read the preference source shard by shard; keep winners, quarantine bad rows with reasons."""
    from .stages import ingest as stage

    with _failures(stage):
        _show(stage.run(_params(params), out, metrics))


@app.command()
def validate(params: Path = PARAMS, ingest_dir: Path = _path(L.INGEST, "The ingest stage's folder."),
             docs: Path = _path(L.DATA_DOCS, "Great Expectations Data Docs site."),
             results: Path = _path(L.EXPECTATIONS, "Suite results."),
             metrics: Path = _path(L.metrics("validate"), METRICS)) -> None:
    """Run the Great Expectations checkpoint on the ingested rows; fail above the quarantine limit."""
    from .stages import validate as stage

    with _failures(stage):
        _show(stage.run(_params(params), ingest_dir, docs, results, metrics))


@app.command()
def cache(params: Path = PARAMS, ingest_dir: Path = _path(L.INGEST, "The ingest stage's folder."),
          model: Path = _path(L.BASE_MODEL, "Base model whose VAE/text encoder encode."),
          out: Path = _path(L.CACHE, "Cache folder."), metrics: Path = _path(L.metrics("cache"), METRICS)) -> None:
    """Encode winners (and losers) to VAE latents and captions to text embeddings, once."""
    from .stages import cache as stage

    with _failures(stage):
        _show(stage.run(_params(params), ingest_dir, model, out, metrics))


@app.command("scorer-model")
def scorer_model(params: Path = PARAMS, web: Path = _path(L.WORLD_WEB, "Web corpus folder (contrastive phase)."),
                 ingest_dir: Path = _path(L.INGEST, "Ingested winner/loser pairs.", "--ingest"),
                 truth: Path = _path(L.WORLD_PAIRS_TRUTH, "The world's true utilities."),
                 out: Path = _path(L.PICKSCORE, "Output folder (PickScore's on-disk format)."),
                 metrics: Path = _path(L.metrics("scorer_model"), METRICS)) -> None:
    """Train the embedded world's PickScore (CLIP contrastive, then PickScore's pair loss)."""
    from .stages import scorer_model as stage

    with _failures(stage):
        _show(stage.run(_params(params), web, ingest_dir, truth, out, metrics))


@app.command()
def select(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT) -> None:
    """Round k, step 1: choose the reference checkpoint from the bank (seeded, recorded)."""
    from .stages import select as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, root))


@app.command()
def refsamples(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT,
               cache_dir: Path = _path(L.CACHE, "Latent cache folder.", "--cache")) -> None:
    """Round k, step 2: the selected checkpoint generates reference samples for the round's prompts."""
    from .stages import refsamples as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, root, cache_dir))


@app.command()
def train(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT,
          cache_dir: Path = _path(L.CACHE, "Latent cache folder.", "--cache")) -> None:
    """Round k, step 3: train theta_{k-1} against the selected reference; save theta_k."""
    from .stages import train as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, root, cache_dir))


@app.command("eval-generate")
def eval_generate(
    params: Path = PARAMS,
    checkpoint: Path = typer.Option(..., help="Pipeline folder (models/base, models/round_k)."),
    name: str = typer.Option(..., help="Name of the checkpoint in tables: base, round_1, ..."),
    out: Path = typer.Option(None, help=f"Output folder; default {L.eval_images('<name>')}."),
    world_prompts: Path = _path(L.WORLD_PROMPTS, "Embedded prompts."),
    timing: Path = typer.Option(None, help="Wall-clock JSON; default reports/metrics/timing/eval_<name>.json."),
) -> None:
    """Generate the evaluation images of one checkpoint (once per prompt and seed)."""
    from .stages import eval_generate as stage

    with _failures(stage):
        _show(stage.run(_params(params), checkpoint, name, out, world_prompts, timing))


@app.command()
def evaluate(params: Path = PARAMS,
             images: list[Path] = typer.Option(..., "--images", help="Folders from eval-generate, base first."),
             out: Path = _path(L.EVAL, "Scores table, summary and grid."),
             metrics: Path = _path(L.metrics("eval"), METRICS),
             plots: Path = _path(L.EVAL_PLOTS, "Per-round curves.")) -> None:
    """Score every checkpoint's images with every configured scorer; means, CIs, win rates."""
    from .stages import evaluate as stage

    with _failures(stage):
        _show(stage.run(_params(params), images, out, metrics, plots))


@app.command()
def report(params: Path = PARAMS, root: Path = ROOT) -> None:
    """Regenerate reports/report.md and reports/report.html from tracked outputs only."""
    from .stages import report as stage

    with _failures(stage):
        _show(stage.run(_params(params), root))


# ---- the video pipeline's stages (video/dvc.yaml, docs/video.md), in pipeline order ----


@app.command("video-world")
def video_world(params: Path = PARAMS, out: Path = _path(L.VIDEO_WORLD, "Output folder of the video world."),
                metrics: Path = _path(L.metrics("video_world"), METRICS)) -> None:
    """Generate Shapeland clips (the text-to-video path, docs/video.md): winners / losers in the video
    ingest's folder format, held-out clean clips for the video metrics, prompts and the pairs' truth."""
    from .stages import video_world as stage

    with _failures(stage):
        _show(stage.run(_params(params), out, metrics))


@app.command("video-base")
def video_base(params: Path = PARAMS,
               base: Path = _path(L.BASE_MODEL, "The image model (a diffusers SD folder), kept frozen."),
               web: Path = _path(L.VIDEO_WORLD_WEB, "The video world's web clips."),
               out: Path = _path(L.VIDEO_BASE, "Output AnimateDiffPipeline folder (+ motion_adapter/)."),
               metrics: Path = _path(L.metrics("video_base"), METRICS)) -> None:
    """theta_0 of the video arms: the embedded AnimateDiff's motion adapter pretrained on the video world's web
    clips, or video_base.source (a MotionAdapter) composed with models/base (docs/video.md)."""
    from .stages import video_base as stage

    with _failures(stage):
        _show(stage.run(_params(params), base, web, out, metrics))


@app.command("video-features")
def video_features(params: Path = PARAMS,
                   out: Path = _path(L.VIDEO_FEATURES, "Output folder (frame.safetensors, clip.safetensors)."),
                   metrics: Path = _path(L.metrics("video_features"), METRICS)) -> None:
    """The embedded FID / FVD feature networks: a frame CNN and a clip 3-D CNN trained on rendered video-world
    frames and clips, with what FID / FVD say of broken sets vs clean clips (docs/video.md)."""
    from .stages import video_features as stage

    with _failures(stage):
        _show(stage.run(_params(params), out, metrics))


@app.command("video-ingest")
def video_ingest(params: Path = PARAMS, out: Path = _path(L.VIDEO_INGEST, "Output folder (winners/, losers/)."),
                 metrics: Path = _path(L.metrics("video_ingest"), "Metrics JSON (counts).")) -> None:
    """Read video.source (and video.losers): every clip kept or quarantined with its reason (docs/video.md)."""
    from .stages import video_ingest as stage

    with _failures(stage):
        _show(stage.run(_params(params), out, metrics))


@app.command("video-cache")
def video_cache(params: Path = PARAMS, ingest_dir: Path = _path(L.VIDEO_INGEST, "The video ingest stage's folder."),
                model: Path = _path(L.VIDEO_BASE, "theta_0 of the video arms (its VAE and text encoder)."),
                out: Path = _path(L.VIDEO_CACHE, "Cache folder."),
                metrics: Path = _path(L.metrics("video_cache"), METRICS)) -> None:
    """Encode the winning (and losing) clips to latents (n, C, F, h, w) and captions to text embeddings, once."""
    from .stages import video_cache as stage

    with _failures(stage):
        _show(stage.run(_params(params), ingest_dir, model, out, metrics))


VIDEO_CACHE = _path(L.VIDEO_CACHE, "Video latent cache folder.", "--cache")


@app.command("video-select")
def video_select(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM) -> None:
    """A video arm's round k, step 1: choose the reference checkpoint from the arm's bank."""
    from .stages import video_select as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, arm, root))


@app.command("video-refsamples")
def video_refsamples(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM,
                     cache_dir: Path = VIDEO_CACHE) -> None:
    """A video arm's round k, step 2: the selected checkpoint generates reference clips (latents)."""
    from .stages import video_refsamples as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, arm, root, cache_dir))


@app.command("video-train")
def video_train(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM,
                cache_dir: Path = VIDEO_CACHE) -> None:
    """A video arm's round k, step 3: train its theta_{k-1} (video.trainable: motion modules or all)."""
    from .stages import video_train as stage

    with _failures(stage):
        _show(stage.run(_params(params), round_k, arm, root, cache_dir))


@app.command("video-eval-generate")
def video_eval_generate(
    params: Path = PARAMS,
    checkpoint: Path = typer.Option(..., help="Video checkpoint: an AnimateDiffPipeline folder (models/video_base, "
                                    "models/video_round_k, models/video_sft_round_k, ...)."),
    name: str = typer.Option(..., help="Name of the checkpoint in tables: base, round_1, sft_round_1, ..."),
    out: Path = typer.Option(None, help=f"Output folder; default {L.video_eval_clips('<name>')}."),
    timing: Path = typer.Option(None, help="Wall-clock JSON; default reports/metrics/timing/video_eval_<name>.json."),
) -> None:
    """Generate the evaluation clips of one video checkpoint (once per prompt and seed; docs/video.md)."""
    from .stages import video_eval_generate as stage

    with _failures(stage):
        _show(stage.run(_params(params), checkpoint, name, out, timing))


@app.command("video-evaluate")
def video_evaluate(params: Path = PARAMS,
                   clips: list[Path] = typer.Option(..., "--clips", help="Folders from video-eval-generate, base first."),
                   out: Path = _path(L.VIDEO_EVAL, "Scores table, summary and settings."),
                   metrics: Path = _path(L.metrics("video_eval"), METRICS)) -> None:
    """Score every video checkpoint's clips against the real clips: utility, PSNR, SSIM, LPIPS, FID, FVD; CIs."""
    from .stages import video_evaluate as stage

    with _failures(stage):
        _show(stage.run(_params(params), clips, out, metrics))


@app.command("video-report")
def video_report(params: Path = PARAMS, eval_dir: Path = _path(L.VIDEO_EVAL, "The video-evaluate folder.", "--eval"),
                 clips: list[Path] = typer.Option(..., "--clips", help="Folders from video-eval-generate, base first."),
                 out: Path = _path(L.VIDEO_REPORTS, "Folder of report.md, report.html and figures/.")) -> None:
    """Write the video report (Markdown and self-contained HTML with frame strips and animated previews)."""
    from .stages import video_report as stage

    with _failures(stage):
        _show(stage.run(_params(params), clips, eval_dir, out))


# ---- tools around the pipeline: planning, the probe, the study, results, presets, downloads ----


@app.command()
def plan(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("dvc.yaml"), help="Where to write."),
    set_: list[str] = typer.Option([], "--set", help="key=value params overrides (as dvc exp run -S)."),
) -> None:
    """Write dvc.yaml from params (one select/refsamples/train stage per round)."""
    from .planning.dvc import write
    from .params_edit import load_with_overrides

    from .data.sources import SourceError

    with _exit_on(ConfigError, 2):
        p = load_with_overrides(params, set_) if set_ else load_params(params)
    with _exit_on(SourceError, 2):  # e.g. a Hub dataset id without a pinned ingest.revision
        changed = write(p, out)
    typer.echo(f"{out}: {'updated' if changed else 'up to date'}")


@app.command("results")
def results_page(params: Path = PARAMS, root: Path = ROOT,
            check: bool = typer.Option(False, help="Write nothing; exit 1 when docs/results.md or the README's "
                                                   "headline is stale.")) -> None:
    """Regenerate docs/results.md and the README's headline table from the committed outputs."""
    from .reports.results import run_results

    out = run_results(_params(params), root, check=check)
    _show(out)
    if check and out["stale"]:
        raise typer.Exit(1)


@app.command("plots-page")
def plots_page(
    out: Path = typer.Option(Path("dvc_plots"), help="Folder of the page (index.html + _vendor/)."),
) -> None:
    """dvc plots show as a page that renders offline (vega scripts copied next to it)."""
    from .webassets.offline import dvc_plots_page

    _show(dvc_plots_page(out))


@app.command()
def preset(
    file: Path = typer.Argument(..., help="A preset of params overrides, e.g. configs/sd15-pickapic.yaml."),
    params: Path = PARAMS,
) -> None:
    """Merge a preset into params.yaml (validated first; written atomically) and re-plan dvc.yaml."""
    from .planning.dvc import write
    from .params_edit import apply_preset

    from .data.sources import SourceError

    with _exit_on((ConfigError, SourceError), 2):
        p = apply_preset(params, file)
    write(p)
    typer.echo(f"{params}: preset {file} applied; dvc.yaml re-planned ({p.train.rounds} rounds)")


@app.command("download-models")
def download_models(
    params: Path = PARAMS,
    scorers_only: bool = typer.Option(False, help="Only the evaluation scorers' weights."),
) -> None:
    """Fill the local Hugging Face cache with every Hub id in params (needs network; run when asked).

    Local paths and weights the pipeline builds are left alone. Tokens come from the environment
    (HF_TOKEN) and are never printed.
    """
    from .downloads import download_models as run

    run(_params(params), scorers_only, typer.echo)


@app.command()
def study(
    params: Path = PARAMS,
    root: Path = typer.Option(Path("."), help="The DVC project (its pipeline has run: shared stages cached)."),
    jobs: int = typer.Option(0, help="Experiments at once; 0 = study.jobs (<= 2 on a 2-core machine)."),
    only: list[str] = typer.Option([], "--only", help="Run only these variants (repeatable)."),
    seed: list[int] = typer.Option([], "--seed", help="Run only these training seeds (repeatable; a budget's "
                                   "first pass, e.g. every new variant on seed 0 before their other seeds)."),
    aggregate_only: bool = typer.Option(False, "--aggregate-only",
                                        help="Recompute the aggregate from the per-run records; run nothing."),
    no_replan: bool = typer.Option(False, "--no-replan", help="Keep the project's dvc.yaml as it is."),
    print_queue: bool = typer.Option(False, "--print-queue", help="Print dvc exp run --queue lines for the "
                                     "missing runs (for dvc queue start -j N on a bigger machine); run nothing."),
    out: Path = typer.Option(None, "--out", help="Study folder instead of study.out: one folder per theta_0, e.g. "
                             "the runs of another machine type, whose pretraining draws another theta_0."),
    submit: bool = typer.Option(False, "--submit", help="Run the missing runs on a Prefect work pool instead of "
                                "here: each becomes one flow run of seppo-study-run (docs/scale.md)."),
    collect: bool = typer.Option(False, "--collect", help="Pull the finished runs from the shared remotes (dvc exp "
                                 "pull), record them, aggregate; run nothing."),
    wait: bool = typer.Option(False, "--wait", help="With --submit: wait for the flow runs, then --collect."),
    git_remote: str = typer.Option("origin", "--git-remote", help="The git remote every worker shares."),
    pool: str = typer.Option("seppo-study", "--pool", help="With --submit: the Prefect work pool."),
    threads: int = typer.Option(0, "--threads", help="With --submit: torch threads of each run on its worker "
                                "(0 = every core of the worker's machine)."),
) -> None:
    """The ablation study: variants x training seeds as DVC experiments (resumable), then the aggregate."""
    from .study.aggregate import run_aggregate
    from .study.runner import StudyError, queue_commands, run_study

    p = _params(params if params.is_absolute() else root / params)
    if out is not None:
        p = p.model_copy(update={"study": p.study.model_copy(update={"out": str(out)})})
    if (submit or collect) and (only or seed or jobs or print_queue or aggregate_only):
        raise typer.BadParameter("--submit / --collect take the whole matrix: --only, --seed, --jobs, --print-queue "
                                 "and --aggregate-only do not apply (a worker's concurrency is its --limit)")
    with _exit_on(StudyError, 1):
        if submit or collect:
            _distributed(root, p, "study", submit, collect or wait, git_remote, pool, threads, not no_replan)
        elif print_queue:
            for line in queue_commands(p, root):
                typer.echo(line)
        elif aggregate_only:
            _show(run_aggregate(p, root))
        else:
            _show(run_study(root, p, jobs or None, only or None, replan=not no_replan,
                            echo=lambda m: typer.echo(m, err=True), seeds=seed or None))


def _distributed(root: Path, p, section: str, submit: bool, collect: bool, git_remote: str, pool: str,
                 threads: int, replan: bool) -> None:
    from .study.remote import collect_remote, submit_study, wait_for

    from .study.runner import StudyError

    echo = lambda m: typer.echo(m, err=True)  # noqa: E731
    final: dict[str, str] = {}
    if submit:
        res = submit_study(root, p, section, git_remote, pool, replan=replan, threads=threads, echo=echo)
        if collect:
            final = wait_for(res["submitted"], echo)
        else:
            _show(res)
    if collect:
        _show(collect_remote(root, p, section, git_remote, echo))
    bad = sorted(n for n, state in final.items() if state != "COMPLETED")
    if bad:  # after collecting what did finish: the others are submitted again by the next --submit
        raise StudyError(f"{len(bad)} flow runs did not complete ({', '.join(bad)}): see their logs in the Prefect "
                         "UI; `--submit` again retries them")


@app.command("video-study")
def video_study_cmd(
    params: Path = PARAMS,
    root: Path = typer.Option(Path("."), help="The DVC project (dvc repro video/dvc.yaml has run: theta_0, the "
                              "cache and the base's clips are cached)."),
    jobs: int = typer.Option(0, help="Experiments at once; 0 = video_study.jobs (<= 2 on a 2-core machine)."),
    only: list[str] = typer.Option([], "--only", help="Run only these variants (repeatable)."),
    seed: list[int] = typer.Option([], "--seed", help="Run only these training seeds (repeatable)."),
    aggregate_only: bool = typer.Option(False, "--aggregate-only",
                                        help="Recompute the aggregate from the per-run records; run nothing."),
    submit: bool = typer.Option(False, "--submit", help="Run the missing runs on a Prefect work pool (as "
                                "seppo study --submit)."),
    collect: bool = typer.Option(False, "--collect", help="Pull the finished runs from the shared remotes, "
                                 "record, aggregate; run nothing."),
    wait: bool = typer.Option(False, "--wait", help="With --submit: wait for the flow runs, then --collect."),
    git_remote: str = typer.Option("origin", "--git-remote", help="The git remote every worker shares."),
    pool: str = typer.Option("seppo-study", "--pool", help="With --submit: the Prefect work pool."),
) -> None:
    """The video study: the video arms x training seeds as DVC experiments of video/dvc.yaml (resumable, arm by arm),
    then the aggregate in video_study.out (two-level CIs, curves over rounds, FID / FVD per seed)."""
    from .study.runner import StudyError, run_study
    from .study.video import run_video_aggregate

    p = _params(params if params.is_absolute() else root / params)
    with _exit_on(StudyError, 1):
        if submit or collect:
            _distributed(root, p, "video_study", submit, collect or wait, git_remote, pool, 0, True)
        elif aggregate_only:
            _show(run_video_aggregate(p, root))
        else:
            _show(run_study(root, p, jobs or None, only or None, echo=lambda m: typer.echo(m, err=True),
                            seeds=seed or None, section="video_study"))


@app.command("check-params")
def check_params(params: Path = PARAMS) -> None:
    """Validate a params file and print it with every default filled in."""
    import yaml

    typer.echo(yaml.safe_dump(_params(params).model_dump(), sort_keys=False))


@app.command()
def probe(
    params: Path = PARAMS,
    round_k: int = ROUND,
    root: Path = ROOT,
    policy: Path = typer.Option(..., help="Policy checkpoint (a pipeline folder, e.g. models/round_1)."),
    reference: Path = typer.Option(None, help="Reference checkpoint; default the round's selection "
                                   "(runs/round_k/reference.json)."),
    draws: int = typer.Option(32, help="Independent (noise, t) draws per position (>= 2)."),
    positions: int = typer.Option(None, help="Probe only the round's first N positions (default all)."),
    seed: int = typer.Option(0, help="Seed of the probe's draws and of the AUC bootstrap."),
    out: Path = typer.Option(Path(L.PROBE), help="Folder of round_k.json and round_k_positions.parquet."),
    cache_dir: Path = _path(L.CACHE, "Latent cache folder.", "--cache"),
    scorer: str = typer.Option(None, help="Also rank by this preference scorer (an evaluate.scorers name, weights "
                               "from evaluate.models): the reward criterion's statistic."),
) -> None:
    """The anchor's and the implicit reward's statistics at fixed checkpoints, averaged over many draws per position
    of round k, against the embedded world's oracle (AUC with a bootstrap CI): is the statistic uninformative, or
    does the round's drift blur it?"""
    from .layout import Layout
    from .training.probe import run_probe

    p = _params(params)
    _show(run_probe(p.train, round_k, Layout(root), root / cache_dir, policy, reference, draws,
                    root / out if not out.is_absolute() else out, seed, positions, scorer=scorer,
                    scorer_models=p.evaluate.models.model_dump()))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m seppo.cli`
    main()
