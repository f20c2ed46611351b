"""SDXL through the same stages: cache (two encoders, pooled embeddings), a SePPO round, evaluation."""

import shutil

import numpy as np
import pytest
import torch

from seppo.config import CacheConfig, IngestConfig, SamplingConfig, TrainConfig
from seppo.data.cache import LatentCache, run_cache
from seppo.data.ingest import run_ingest
from seppo.models.conditioning import TextCond, TextEncoders, is_sdxl
from seppo.models.pipeline import generate, load_pipeline
from seppo.layout import Layout
from seppo.training.reference_samples import run_refsamples
from seppo.training.selection import run_select
from seppo.training.forward import MicroBatch, compute_loss
from seppo.training.trainer import run_train
from tests.dummy import save_dummy_sdxl_pipeline
from tests.test_data_ingest import row, write_shard

TINY = dict(criterion="sign", updates_per_round=2, micro_batch=2, lr=1e-3, beta=5000.0, ref_batch_size=8, checkpoint_every=1,
            ref_sampling={"sampler": "ddim", "steps": 2, "guidance": 3.0})


@pytest.fixture(scope="module")
def sdxl_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    save_dummy_sdxl_pipeline(root / "models" / "base")
    src = root / "src"
    src.mkdir()
    write_shard(src / "s.parquet", [row(i, caption=f"a red circle {i % 3}") for i in range(6)])
    run_ingest(IngestConfig(source=str(src)), root / "data/ingest", root / "m1.json")
    run_cache(CacheConfig(), root / "data/ingest", root / "models/base", root / "data/cache", root / "m2.json")
    return root


def test_cache_holds_what_the_sdxl_pipeline_encodes(sdxl_project):
    base = sdxl_project / "models/base"
    assert is_sdxl(base) and type(load_pipeline(base)).__name__ == "StableDiffusionXLPipeline"
    cache = LatentCache(sdxl_project / "data/cache")
    assert cache.manifest["sdxl"] is True
    cond = cache.conditioning([0, 1])
    pipe = load_pipeline(base)
    caps = [cache.captions[c] for c in cache.caption_id[[0, 1]]]
    hidden, _, pooled, _ = pipe.encode_prompt(caps, device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    torch.testing.assert_close(cond.hidden, hidden.float())
    torch.testing.assert_close(cond.pooled, pooled.float())
    res = cache.resolution
    assert cond.time_ids.tolist() == [[res, res, 0, 0, res, res]] * 2
    # the SD1.5 layout has no pooled part: TextCond then passes only encoder_hidden_states
    assert set(TextCond(cond.hidden).unet_kwargs()) == {"encoder_hidden_states"}


def test_time_ids_and_pooled_embeddings_reach_the_unet(sdxl_project):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sdxl_project / "models/base", subfolder="unet").eval()
    cache = LatentCache(sdxl_project / "data/cache")
    z, cond = cache.latents([0, 1]), cache.conditioning([0, 1])
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = unet(z, t, **cond.unet_kwargs()).sample
        other = TextCond(cond.hidden, cond.pooled, cond.time_ids * 2)
        b = unet(z, t, **other.unet_kwargs()).sample
    assert not torch.allclose(a, b)  # the micro-conditioning is used, not dropped


def test_a_seppo_round_on_sdxl_saves_a_loadable_sdxl_checkpoint(sdxl_project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(sdxl_project / "models/base", root / "models/base")
    shutil.copytree(sdxl_project / "data/cache", root / "data/cache")
    cfg, lay = TrainConfig(**TINY), Layout(root)
    run_select(cfg, 1, lay)
    run_refsamples(cfg, 1, lay, root / "data/cache")
    summary = run_train(cfg, 1, lay, root / "data/cache")
    assert np.isfinite(summary["mean_loss"])
    pipe = load_pipeline(root / "models/round_1")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    before = load_pipeline(root / "models/base").unet.state_dict()
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert any("add_embedding" in k for k in changed)  # the pooled/time-id path got gradients
    images = generate(pipe, ["a red circle 1"], [0], SamplingConfig(steps=2, guidance=3.0))
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8


def test_sdxl_loss_uses_the_fused_forward(sdxl_project):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    base = sdxl_project / "models/base"
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet").eval()
    sched = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    cache = LatentCache(sdxl_project / "data/cache")
    z_w, cond = cache.latents([0, 1]), cache.conditioning([0, 1])
    z_r = torch.randn_like(z_w)
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(z_w.shape, generator=g), torch.tensor([100, 900])
    loss, stats = compute_loss(TrainConfig(**TINY), unet, unet, sched, MicroBatch(z_w, z_r, cond, noise, t))
    assert loss.item() == pytest.approx(np.log(2.0), abs=1e-6)  # policy == reference: logit 0
    assert stats.tie_rate == 1.0
