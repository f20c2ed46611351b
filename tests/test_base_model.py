"""Pretraining the embedded base model (a few steps) and the stages around it, end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seppo.config import BaseModelConfig, BaseSamplesConfig, SamplingConfig, WorldConfig
from seppo.models.stage import run_base_model
from seppo.reports.base_samples import bootstrap_ci, run_base_samples
from seppo.world.stage import run_world

TINY = BaseModelConfig(
    text_hidden=32, text_layers=1, max_tokens=16, vae_channels=[8, 16, 16], vae_steps=3,
    unet_channels=[16, 32], unet_steps=3, batch_size=4,
)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    world_cfg = WorldConfig(train_prompts=4, pairs_per_prompt=2, eval_prompts=3, web_size=24,
                            utility_check_renders=10)
    run_world(world_cfg, root / "data/world", root / "reports/metrics/world.json")
    summary = run_base_model(TINY, root / "data/world/web", root / "models/base",
                             root / "reports/metrics/base_model.json")
    return root, summary


@pytest.mark.slow
def test_pretrained_base_model_is_a_diffusers_pipeline(pipeline_run):
    from diffusers import StableDiffusionPipeline

    root, summary = pipeline_run
    pipe = StableDiffusionPipeline.from_pretrained(root / "models/base", safety_checker=None)
    assert pipe.tokenizer.model_max_length == 16 and len(pipe.tokenizer) == 49408
    assert pipe.vae.config.scaling_factor == pytest.approx(summary["latent_scaling_factor"])
    # Weights are safetensors, and the 4.x-readable tokenizer files are kept.
    assert list((root / "models/base/unet").glob("*.safetensors"))
    assert (root / "models/base/tokenizer/vocab.json").exists()
    prov = json.loads((root / "models/base/seppo_provenance.json").read_text())
    assert prov["params"]["unet_steps"] == 3 and prov["log"][-1]["phase"] == "unet"


@pytest.mark.slow
def test_pretraining_is_reproducible(pipeline_run, tmp_path):
    from safetensors.torch import load_file

    root, _ = pipeline_run
    run_base_model(TINY, root / "data/world/web", tmp_path / "base", tmp_path / "m.json")
    for part in ("unet", "vae"):
        a = load_file(next((root / "models/base" / part).glob("*.safetensors")))
        b = load_file(next((tmp_path / "base" / part).glob("*.safetensors")))
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


@pytest.mark.slow
def test_for_loop_adamw_rebuilds_the_legacy_recipe_bit_for_bit(pipeline_run, tmp_path, monkeypatch):
    """adamw_impl: for-loop (study.shared's pin) must compute what the code did before the param existed:
    torch's default AdamW and a per-tensor EMA loop; the default 'fused' is the same recipe, rounded otherwise."""
    import torch
    from safetensors.torch import load_file

    import seppo.models.pretrain as pretrain

    root, _ = pipeline_run
    legacy_cfg = TINY.model_copy(update={"adamw_impl": "for-loop"})
    run_base_model(legacy_cfg, root / "data/world/web", tmp_path / "ours", tmp_path / "m1.json")
    with monkeypatch.context() as m:  # the code before 2026-11-26
        m.setattr(pretrain, "adamw", lambda params, lr, wd, impl: torch.optim.AdamW(params, lr=lr, weight_decay=wd))
        m.setattr(torch, "_foreach_lerp_", lambda es, ps, w: [e.lerp_(p, w) for e, p in zip(es, ps)])
        run_base_model(legacy_cfg, root / "data/world/web", tmp_path / "legacy", tmp_path / "m2.json")
    for part in ("unet", "vae"):
        a = load_file(next((tmp_path / "ours" / part).glob("*.safetensors")))
        b = load_file(next((tmp_path / "legacy" / part).glob("*.safetensors")))
        c = load_file(next((root / "models/base" / part).glob("*.safetensors")))  # TINY: fused
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert all(torch.allclose(a[k], c[k], atol=1e-3) for k in a)


@pytest.mark.slow
def test_base_samples_writes_grid_table_and_metrics(pipeline_run):
    root, _ = pipeline_run
    cfg = BaseSamplesConfig(prompts=3, seeds=[0, 1], grid_prompts=3,
                            sampling=SamplingConfig(steps=2, guidance=3.0))
    out = root / "reports/base_model"
    metrics = run_base_samples(cfg, root / "models/base", root / "data/world/prompts.parquet",
                               root / "reports/metrics/world.json", out,
                               root / "reports/metrics/base_samples.json")
    table = pd.read_csv(out / "samples.csv")
    assert len(table) == 6 and set(table.seed) == {0, 1}
    assert metrics["base_mean_utility"] == pytest.approx(table.utility.mean())
    assert metrics["sampling"] == {"sampler": "ddim", "steps": 2, "guidance": 3.0, "seeds": [0, 1], "prompts": 3}
    first = (out / "grid.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    # Same inputs, same bytes (the grid carries no timestamp).
    run_base_samples(cfg, root / "models/base", root / "data/world/prompts.parquet",
                     root / "reports/metrics/world.json", out, root / "reports/metrics/again.json")
    assert (out / "grid.png").read_bytes() == first


def test_bootstrap_interval_brackets_the_mean():
    values = np.random.default_rng(0).normal(0.5, 0.1, 400)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * 0.1 / 20, rel=0.2)


def test_non_embedded_source_is_copied_through_the_same_loader(tiny_pipeline_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    cfg = BaseModelConfig(source=str(tiny_pipeline_dir))
    summary = run_base_model(cfg, Path("unused"), tmp_path / "base", tmp_path / "m.json")
    assert summary["source"] == str(tiny_pipeline_dir)
    StableDiffusionPipeline.from_pretrained(tmp_path / "base", safety_checker=None)
