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


@app.command()
def world(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("data/world"), help="Output folder of the world's data."),
    metrics: Path = typer.Option(Path("reports/metrics/world.json"), help="Metrics JSON."),
) -> None:
    """Generate Shapeland: Pick-a-Pic v2 style shards, prompts, web corpus, utility check."""
    from .world.stage import run_world

    _show(run_world(_params(params).world, out, metrics))


@app.command("video-world")
def video_world(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("data/video_world"), help="Output folder of the video world."),
    metrics: Path = typer.Option(Path("reports/metrics/video_world.json"), help="Metrics JSON."),
) -> None:
    """Generate Shapeland clips (the text-to-video path, docs/video.md): winners / losers in the video
    ingest's folder format, held-out clean clips for the video metrics, prompts and the pairs' truth."""
    from .io_utils import write_json
    from .world.video_stage import run_video_world

    result = run_video_world(_params(params).video_world, out)
    write_json(metrics, result)
    _show(result)


@app.command("video-base")
def video_base(
    params: Path = PARAMS,
    base: Path = typer.Option(Path("models/base"), help="The image model (a diffusers SD folder), kept frozen."),
    web: Path = typer.Option(Path("data/video_world/web"), help="The video world's web clips."),
    out: Path = typer.Option(Path("models/video_base"), help="Output AnimateDiffPipeline folder (+ motion_adapter/)."),
    metrics: Path = typer.Option(Path("reports/metrics/video_base.json"), help="Metrics JSON."),
) -> None:
    """theta_0 of the video arms: the embedded AnimateDiff's motion adapter pretrained on the video world's web
    clips, or video_base.source (a MotionAdapter) composed with models/base (docs/video.md)."""
    from .io_utils import write_json
    from .models.video_pretrain import run_video_base

    result = run_video_base(_params(params).video_base, base, web, out)
    write_json(metrics, result)
    _show({k: v for k, v in result.items() if k != "log"})


@app.command("video-ingest")
def video_ingest(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("data/video_ingest"), help="Output folder (winners/, losers/)."),
    metrics: Path = typer.Option(Path("reports/metrics/video_ingest.json"), help="Metrics JSON (counts)."),
) -> None:
    """Read video.source (and video.losers): every clip kept or quarantined with its reason (docs/video.md)."""
    from .data.video_ingest import VideoSourceError, run_video_ingest

    with _exit_on(VideoSourceError, 1):
        _show(run_video_ingest(_params(params).video, out, metrics))


@app.command("video-cache")
def video_cache(
    params: Path = PARAMS,
    ingest_dir: Path = typer.Option(Path("data/video_ingest"), help="The video ingest stage's folder."),
    model: Path = typer.Option(Path("models/video_base"), help="theta_0 of the video arms (its VAE and text encoder)."),
    out: Path = typer.Option(Path("data/video_cache"), help="Cache folder."),
    metrics: Path = typer.Option(Path("reports/metrics/video_cache.json"), help="Metrics JSON."),
) -> None:
    """Encode the winning (and losing) clips to latents (n, C, F, h, w) and captions to text embeddings, once."""
    from .data.video_cache import run_video_cache

    _show(run_video_cache(_params(params).video, ingest_dir, model, out, metrics))


ROUND = typer.Option(..., "--round", "-k", min=1, help="Round k (1-based); the bank is theta_0..theta_{k-1}.")
ROOT = typer.Option(Path("."), "--root", help="Project root holding models/, data/, runs/.")
ARM = typer.Option("seppo", "--arm", help="The video arm (video.arms): seppo, sft or dpo.")
VIDEO_CACHE = typer.Option(Path("data/video_cache"), "--cache", help="Video latent cache folder.")


def _arm_config(p: Params, arm: str):
    """train.* + video.train_overrides, with the arm's loss."""
    from .config import VIDEO_ARMS
    from .training.plan import video_train_config

    if arm not in VIDEO_ARMS:
        raise typer.BadParameter(f"--arm {arm!r}: one of {', '.join(VIDEO_ARMS)}")
    return video_train_config(p).model_copy(update={"loss": arm})


@app.command("video-select")
def video_select(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM) -> None:
    """A video arm's round k, step 1: choose the reference checkpoint from the arm's bank."""
    from .training.plan import video_layout
    from .training.selection import run_select

    _show(run_select(_arm_config(_params(params), arm), round_k, video_layout(arm, root)))


@app.command("video-refsamples")
def video_refsamples(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM,
                     cache_dir: Path = VIDEO_CACHE) -> None:
    """A video arm's round k, step 2: the selected checkpoint generates reference clips (latents)."""
    from .training.plan import video_layout
    from .training.reference_samples import run_refsamples

    _show(run_refsamples(_arm_config(_params(params), arm), round_k, video_layout(arm, root), root / cache_dir))


@app.command("video-train")
def video_train(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT, arm: str = ARM,
                cache_dir: Path = VIDEO_CACHE) -> None:
    """A video arm's round k, step 3: train its theta_{k-1} (video.trainable: motion modules or all)."""
    from .training.plan import video_layout
    from .training.trainer import TrainingDiverged, run_train

    p = _params(params)
    with _exit_on(TrainingDiverged, 1):
        _show(run_train(_arm_config(p, arm), round_k, video_layout(arm, root), root / cache_dir, p.video.trainable))


@app.command("base-model")
def base_model(
    params: Path = PARAMS,
    web: Path = typer.Option(Path("data/world/web"), help="Web corpus folder (embedded source)."),
    out: Path = typer.Option(Path("models/base"), help="Output diffusers folder of theta_0."),
    metrics: Path = typer.Option(Path("reports/metrics/base_model.json"), help="Metrics JSON."),
) -> None:
    """Pretrain the embedded base model, or copy base_model.source into a diffusers folder."""
    from .models.stage import run_base_model

    _show(run_base_model(_params(params).base_model, web, out, metrics))


@app.command("base-samples")
def base_samples(
    params: Path = PARAMS,
    model: Path = typer.Option(Path("models/base"), help="Pipeline folder to sample."),
    prompts: Path = typer.Option(Path("data/world/prompts.parquet"), help="Prompt table."),
    world_metrics: Path = typer.Option(Path("reports/metrics/world.json"), help="World metrics."),
    out: Path = typer.Option(Path("reports/base_model"), help="Folder of the grid and table."),
    metrics: Path = typer.Option(Path("reports/metrics/base_samples.json"), help="Metrics JSON."),
) -> None:
    """Sample theta_0 on held-out prompts; write a captioned grid and ground-truth utilities."""
    from .reports.base_samples import run_base_samples

    _show(run_base_samples(_params(params).base_samples, model, prompts, world_metrics, out, metrics))


@app.command()
def ingest(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("data/ingest"), help="Folder of winners/losers/quarantine tables."),
    metrics: Path = typer.Option(Path("reports/metrics/ingest.json"), help="Counts JSON."),
) -> None:
    """Read the preference source shard by shard; keep winners, quarantine bad rows with reasons."""
    from .data.ingest import run_ingest
    from .data.sources import SourceError

    with _exit_on(SourceError, 2):
        _show(run_ingest(_params(params).ingest, out, metrics))


@app.command()
def validate(
    params: Path = PARAMS,
    ingest_dir: Path = typer.Option(Path("data/ingest"), help="The ingest stage's folder."),
    docs: Path = typer.Option(Path("reports/data_docs"), help="Great Expectations Data Docs site."),
    results: Path = typer.Option(Path("reports/data/expectations.json"), help="Suite results."),
    metrics: Path = typer.Option(Path("reports/metrics/validate.json"), help="Metrics JSON."),
) -> None:
    """Run the Great Expectations checkpoint on the ingested rows; fail above the quarantine limit."""
    from .data.expectations import DataQualityError, run_validate

    with _exit_on(DataQualityError, 1):
        _show(run_validate(_params(params).ingest, ingest_dir, docs, results, metrics))


@app.command()
def cache(
    params: Path = PARAMS,
    ingest_dir: Path = typer.Option(Path("data/ingest"), help="The ingest stage's folder."),
    model: Path = typer.Option(Path("models/base"), help="Base model whose VAE/text encoder encode."),
    out: Path = typer.Option(Path("data/cache"), help="Cache folder."),
    metrics: Path = typer.Option(Path("reports/metrics/cache.json"), help="Metrics JSON."),
) -> None:
    """Encode winners (and losers) to VAE latents and captions to text embeddings, once."""
    from .data.cache import run_cache

    _show(run_cache(_params(params).cache, ingest_dir, model, out, metrics))




@app.command()
def select(params: Path = PARAMS, round_k: int = ROUND, root: Path = ROOT) -> None:
    """Round k, step 1: choose the reference checkpoint from the bank (seeded, recorded)."""
    from .training.plan import Layout
    from .training.selection import run_select

    _show(run_select(_params(params).train, round_k, Layout(root)))


@app.command()
def refsamples(
    params: Path = PARAMS,
    round_k: int = ROUND,
    root: Path = ROOT,
    cache_dir: Path = typer.Option(Path("data/cache"), "--cache", help="Latent cache folder."),
) -> None:
    """Round k, step 2: the selected checkpoint generates reference samples for the round's prompts."""
    from .training.plan import Layout
    from .training.reference_samples import run_refsamples

    p = _params(params)
    _show(run_refsamples(p.train, round_k, Layout(root), root / cache_dir, p.evaluate.models.model_dump()))


@app.command()
def train(
    params: Path = PARAMS,
    round_k: int = ROUND,
    root: Path = ROOT,
    cache_dir: Path = typer.Option(Path("data/cache"), "--cache", help="Latent cache folder."),
) -> None:
    """Round k, step 3: train theta_{k-1} against the selected reference; save theta_k."""
    from .training.plan import Layout
    from .training.trainer import TrainingDiverged, run_train

    with _exit_on(TrainingDiverged, 1):
        _show(run_train(_params(params).train, round_k, Layout(root), root / cache_dir))


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
    out: Path = typer.Option(Path("reports/probe"), help="Folder of round_k.json and round_k_positions.parquet."),
    cache_dir: Path = typer.Option(Path("data/cache"), "--cache", help="Latent cache folder."),
    scorer: str = typer.Option(None, help="Also rank by this preference scorer (an evaluate.scorers name, weights "
                               "from evaluate.models): the reward criterion's statistic."),
) -> None:
    """The anchor's and the implicit reward's statistics at fixed checkpoints, averaged over many draws per position
    of round k, against the embedded world's oracle (AUC with a bootstrap CI): is the statistic uninformative, or
    does the round's drift blur it?"""
    from .training.plan import Layout
    from .training.probe import run_probe

    p = _params(params)
    _show(run_probe(p.train, round_k, Layout(root), root / cache_dir, policy, reference, draws,
                    root / out if not out.is_absolute() else out, seed, positions, scorer=scorer,
                    scorer_models=p.evaluate.models.model_dump()))


@app.command("eval-generate")
def eval_generate(
    params: Path = PARAMS,
    checkpoint: Path = typer.Option(..., help="Pipeline folder (models/base, models/round_k)."),
    name: str = typer.Option(..., help="Name of the checkpoint in tables: base, round_1, ..."),
    out: Path = typer.Option(None, help="Output folder; default data/eval/<name>."),
    world_prompts: Path = typer.Option(Path("data/world/prompts.parquet"), help="Embedded prompts."),
    timing: Path = typer.Option(None, help="Wall-clock JSON; default reports/metrics/timing/eval_<name>.json."),
) -> None:
    """Generate the evaluation images of one checkpoint (once per prompt and seed)."""
    from .evaluation.generate import run_eval_generate
    from .io_utils import timing_path

    _show(run_eval_generate(_params(params).evaluate, checkpoint, name, out or Path("data/eval") / name,
                            world_prompts, timing or timing_path(Path("reports/metrics") / f"eval_{name}.json")))


@app.command("scorer-model")
def scorer_model(
    params: Path = PARAMS,
    web: Path = typer.Option(Path("data/world/web"), help="Web corpus folder (contrastive phase)."),
    ingest_dir: Path = typer.Option(Path("data/ingest"), "--ingest", help="Ingested winner/loser pairs."),
    truth: Path = typer.Option(Path("data/world/pairs_truth.parquet"), help="The world's true utilities."),
    out: Path = typer.Option(Path("models/pickscore"), help="Output folder (PickScore's on-disk format)."),
    metrics: Path = typer.Option(Path("reports/metrics/scorer_model.json"), help="Metrics JSON."),
) -> None:
    """Train the embedded world's PickScore (CLIP contrastive, then PickScore's pair loss)."""
    from .evaluation.pickscore_train import run_scorer_model

    p = _params(params)
    _show(run_scorer_model(p.scorer_model, p.world.image_size, web, ingest_dir, truth, out, metrics))


@app.command()
def evaluate(
    params: Path = PARAMS,
    images: list[Path] = typer.Option(..., "--images", help="Folders from eval-generate, base first."),
    out: Path = typer.Option(Path("reports/eval"), help="Scores table, summary and grid."),
    metrics: Path = typer.Option(Path("reports/metrics/eval.json"), help="Metrics JSON."),
    plots: Path = typer.Option(Path("reports/plots/eval_rounds.csv"), help="Per-round curves."),
) -> None:
    """Score every checkpoint's images with every configured scorer; means, CIs, win rates."""
    from .evaluation.scorers import MissingWeights
    from .evaluation.stage import run_evaluate

    with _exit_on(MissingWeights, 2):
        _show(run_evaluate(_params(params).evaluate, images, out, metrics, plots))


@app.command()
def plan(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("dvc.yaml"), help="Where to write."),
    set_: list[str] = typer.Option([], "--set", help="key=value params overrides (as dvc exp run -S)."),
) -> None:
    """Write dvc.yaml from params (one select/refsamples/train stage per round)."""
    from .dvc_plan import write
    from .params_edit import load_with_overrides

    from .data.sources import SourceError

    with _exit_on(ConfigError, 2):
        p = load_with_overrides(params, set_) if set_ else load_params(params)
    with _exit_on(SourceError, 2):  # e.g. a Hub dataset id without a pinned ingest.revision
        changed = write(p, out)
    typer.echo(f"{out}: {'updated' if changed else 'up to date'}")


@app.command()
def report(params: Path = PARAMS, root: Path = ROOT) -> None:
    """Regenerate reports/report.md and reports/report.html from tracked outputs only."""
    from .reports.build import run_report

    _show(run_report(_params(params), root))


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
    from .dvc_plan import write
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
) -> None:
    """The ablation study: variants x training seeds as DVC experiments (resumable), then the aggregate."""
    from .study.aggregate import run_aggregate
    from .study.runner import StudyError, queue_commands, run_study

    p = _params(params if params.is_absolute() else root / params)
    if out is not None:
        p = p.model_copy(update={"study": p.study.model_copy(update={"out": str(out)})})
    with _exit_on(StudyError, 1):
        if print_queue:
            for line in queue_commands(p, root):
                typer.echo(line)
        elif aggregate_only:
            _show(run_aggregate(p, root))
        else:
            _show(run_study(root, p, jobs or None, only or None, replan=not no_replan,
                            echo=lambda m: typer.echo(m, err=True), seeds=seed or None))


@app.command("check-params")
def check_params(params: Path = PARAMS) -> None:
    """Validate a params file and print it with every default filled in."""
    import yaml

    typer.echo(yaml.safe_dump(_params(params).model_dump(), sort_keys=False))


@app.command("video-eval-generate")
def video_eval_generate(
    params: Path = PARAMS,
    checkpoint: Path = typer.Option(..., help="Video checkpoint: an AnimateDiffPipeline folder (models/video_base, "
                                    "models/video_round_k, models/video_sft_round_k, ...)."),
    name: str = typer.Option(..., help="Name of the checkpoint in tables: base, round_1, sft_round_1, ..."),
    out: Path = typer.Option(None, help="Output folder; default data/video_eval/<name>."),
    timing: Path = typer.Option(None, help="Wall-clock JSON; default reports/metrics/timing/video_eval_<name>.json."),
) -> None:
    """Generate the evaluation clips of one video checkpoint (once per prompt and seed; docs/video.md)."""
    from .evaluation.video_generate import VideoEvalError, run_video_eval_generate
    from .io_utils import timing_path
    from .models.pipeline import ModelNotFound

    with _exit_on((VideoEvalError, ModelNotFound), 2):
        _show(run_video_eval_generate(_params(params).video, checkpoint, name, out or Path("data/video_eval") / name,
                                      timing or timing_path(Path("reports/metrics") / f"video_eval_{name}.json")))


@app.command("video-evaluate")
def video_evaluate(
    params: Path = PARAMS,
    clips: list[Path] = typer.Option(..., "--clips", help="Folders from video-eval-generate, base first."),
    out: Path = typer.Option(Path("reports/video/eval"), help="Scores table, summary and settings."),
    metrics: Path = typer.Option(Path("reports/metrics/video_eval.json"), help="Metrics JSON."),
) -> None:
    """Score every video checkpoint's clips against the real clips: utility, PSNR, SSIM, LPIPS, FID, FVD; CIs."""
    from .evaluation.video_generate import VideoEvalError
    from .evaluation.video_stage import run_video_evaluate

    with _exit_on(VideoEvalError, 2):
        _show(run_video_evaluate(_params(params).video, clips, out, metrics))


@app.command("video-report")
def video_report(
    params: Path = PARAMS,
    eval_dir: Path = typer.Option(Path("reports/video/eval"), "--eval", help="The video-evaluate folder."),
    clips: list[Path] = typer.Option(..., "--clips", help="Folders from video-eval-generate, base first."),
    out: Path = typer.Option(Path("reports/video"), help="Folder of report.md, report.html and figures/."),
) -> None:
    """Write the video report (Markdown and self-contained HTML with frame strips and animated previews)."""
    from .evaluation.video_generate import VideoEvalError
    from .reports.video_report import run_video_report

    with _exit_on(VideoEvalError, 2):
        _show(run_video_report(_params(params), eval_dir, clips, out))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m seppo.cli`
    main()
