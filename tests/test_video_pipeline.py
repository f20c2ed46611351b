"""The video arms end to end on tiny random AnimateDiff components: video world -> theta_0 (an AnimateDiff folder)
-> ingest -> cache (5-D latents) -> select / refsamples (clips) / train, and a resumed round equal to an
uninterrupted one."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seppo.config import Params, VideoBaseConfig, VideoWorldConfig
from seppo.config import video_train_config

from .dummy import save_dummy_pipeline

FRAMES = 4


def _params(**train) -> Params:
    return Params(video_world=VideoWorldConfig(frames=FRAMES, train_prompts=6, pairs_per_prompt=2, eval_prompts=2,
                                               real_per_eval_prompt=1, web_size=6),
                  video={"frames": FRAMES, "arms": ["seppo", "sft", "dpo"],
                         "train_overrides": {"updates_per_round": 2, "micro_batch": 2, "ref_batch_size": 4,
                                             "checkpoint_every": 1, "ref_sampling": {"sampler": "ddim", "steps": 2,
                                                                                      "guidance": 2.0}, **train}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project root with theta_0 = models/video_base, the ingest and the cache."""
    from seppo.data.video_cache import run_video_cache
    from seppo.data.video_ingest import run_video_ingest
    from seppo.models.video_pretrain import run_video_base
    from seppo.world.video_stage import run_video_world

    root = tmp_path_factory.mktemp("video_project")
    p = _params()
    run_video_world(p.video_world, root / "data/video_world")
    base = save_dummy_pipeline(root / "models/base")
    run_video_base(VideoBaseConfig(steps=2, batch_size=2), base, root / "data/video_world/web", root / "models/video_base")
    cfg = p.video.model_copy(update={"source": str(root / "data/video_world/winners"),
                                     "losers": str(root / "data/video_world/losers")})
    counts = run_video_ingest(cfg, root / "data/video_ingest", root / "reports/metrics/video_ingest.json")
    summary = run_video_cache(cfg, root / "data/video_ingest", root / "models/video_base", root / "data/video_cache",
                              root / "reports/metrics/video_cache.json")
    return root, counts, summary


def test_theta0_is_an_animatediff_folder_and_the_cache_holds_clip_latents(project):
    from seppo.data.cache import LatentCache
    from seppo.models.pipeline import load_pipeline

    root, counts, summary = project
    pipe = load_pipeline(root / "models/video_base")
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    assert (root / "models/video_base/motion_adapter/config.json").exists()
    assert counts["winners"]["rows_in"] == counts["winners"]["kept"] + counts["winners"]["quarantined"]
    cache = LatentCache(root / "data/video_cache")
    assert len(cache) == counts["winners"]["kept"] == summary["winners_cached"]
    assert tuple(cache.latents([0]).shape) == (1, 4, FRAMES, 8, 8)  # (n, C, F, h, w)
    losers = LatentCache(root / "data/video_cache", "losers")
    assert set(losers.index.winner_uid) <= set(cache.index.winner_uid)


def _round(root: Path, arm: str, p: Params, trainable: str = "motion"):
    from seppo.layout import video_layout
    from seppo.training.reference_samples import run_refsamples
    from seppo.training.selection import run_select
    from seppo.training.trainer import run_train

    cfg = video_train_config(p).model_copy(update={"loss": arm})
    layout = video_layout(arm, root)
    run_select(cfg, 1, layout)
    run_refsamples(cfg, 1, layout, root / "data/video_cache")
    return run_train(cfg, 1, layout, root / "data/video_cache", trainable), layout


def test_a_seppo_round_on_clips_trains_only_the_motion_modules_and_saves_a_loadable_adapter(project):
    from diffusers import MotionAdapter
    from safetensors.torch import load_file

    from seppo.models.pipeline import load_unet

    root, _, _ = project
    summary, layout = _round(root, "seppo", _params())
    assert summary["loss_type"] == "seppo" and np.isfinite(summary["mean_loss"])
    ref = load_file(str(layout.refsamples(1) / "latents.safetensors"))["latents"]
    assert ref.shape[1:] == (4, FRAMES, 8, 8)  # the reference samples are clips
    before, after = load_unet(root / "models/video_base"), load_unet(layout.checkpoint(1))
    moved = {n for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters()) if not torch.equal(a, b)}
    assert moved and all("motion_modules" in n for n in moved)
    adapter = MotionAdapter.from_pretrained(layout.checkpoint(1) / "motion_adapter", use_safetensors=True)
    got = dict(adapter.named_parameters())
    some = next(n for n in moved)
    # the round's MotionAdapter holds the trained motion weights, not theta_0's
    assert any(torch.equal(v, dict(after.named_parameters())[some]) for v in got.values())


def test_every_arm_runs_and_dpo_reads_the_losers(project):
    root, _, _ = project
    for arm in ("sft", "dpo"):
        summary, layout = _round(root, arm, _params())
        assert summary["loss_type"] == arm and layout.checkpoint(1).name == f"video_{arm}_round_1"


def test_a_resumed_video_round_ends_with_the_same_weights(project, tmp_path):
    """Kill after update 1 (state saved every update), resume: the same theta_1 as an uninterrupted run."""
    from seppo.training import trainer

    root, _, _ = project
    a = tmp_path / "a"
    shutil.copytree(root, a)
    _round(a, "seppo", _params(updates_per_round=3))
    b = tmp_path / "b"
    shutil.copytree(root, b)
    real_step = trainer._step
    calls = {"n": 0}

    def crash(run, update):
        if update == 2:
            raise KeyboardInterrupt
        return real_step(run, update)

    trainer._step = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            _round(b, "seppo", _params(updates_per_round=3))
    finally:
        trainer._step = real_step
    assert json.loads((b / "runs/state/video_round_1/meta.json").read_text())["update"] == 2
    _round(b, "seppo", _params(updates_per_round=3))
    w = "unet/diffusion_pytorch_model.safetensors"
    assert (a / "models/video_round_1" / w).read_bytes() == (b / "models/video_round_1" / w).read_bytes()
