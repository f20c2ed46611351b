"""The ``seppo`` command line: one subcommand per DVC stage, each reading its own params section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .config import ConfigError, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file to read.")


def _params(path: Path):
    try:
        return load_params(path)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


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


@app.command("check-params")
def check_params(params: Path = PARAMS) -> None:
    """Validate a params file and print it with every default filled in."""
    import yaml

    typer.echo(yaml.safe_dump(_params(params).model_dump(), sort_keys=False))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
