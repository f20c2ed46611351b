"""The training forwards on video latents (B, C, F, h, w) with a tiny AnimateDiff UNet."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seppo.config import TrainConfig
from seppo.models.conditioning import TextCond
from seppo.training.forward import MicroBatch, compute_loss, fused_batch
from seppo.training.losses import dpo_loss

from .dummy import get_dummy_motion_unet

B, F = 2, 4


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (B, 4, F, 8, 8)
    return MicroBatch(z_w=torch.randn(shape, generator=g), z_r=torch.randn(shape, generator=g),
                      cond=TextCond(torch.randn(B, 5, 32, generator=g), None, None),
                      noise=torch.randn(shape, generator=g), t=torch.tensor([50, 700]))


def _scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000)


def _hand_errors(net, sched, b):
    """Per-sample errors by hand: the motion UNet on the fused batch with the text repeated once per frame,
    the squared error averaged over channels, frames and pixels."""
    x, tt, cc, target = fused_batch(sched, b.z_w, b.z_r, b.cond, b.noise, b.t)
    with torch.no_grad():
        pred = net(x, tt, encoder_hidden_states=cc.hidden.repeat_interleave(F, 0)).sample
    assert pred.shape == x.shape == (2 * B, 4, F, 8, 8)
    return ((pred - target) ** 2).mean(dim=(1, 2, 3, 4)).chunk(2)


def test_video_loss_equals_the_hand_computation_over_frames():
    policy = get_dummy_motion_unet().eval()
    reference = get_dummy_motion_unet(seed=1).eval()
    sched, b = _scheduler(), _batch()
    loss, stats = compute_loss(TrainConfig(loss="seppo", criterion="none", beta=1000.0), policy, reference, sched, b)
    (pw, pr), (rw, rr) = _hand_errors(policy, sched, b), _hand_errors(reference, sched, b)
    want, _ = dpo_loss(pw, rw, pr, rr, beta=1000.0)  # criterion none = DPO on the pair
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert stats.d_w == pytest.approx((pw - rw).mean().item(), rel=1e-4, abs=1e-9)
    # identical policy and reference: every logit is 0, the loss log 2
    same, _ = compute_loss(TrainConfig(loss="seppo", criterion="sign"), policy, copy.deepcopy(policy), sched, b)
    assert same.item() == pytest.approx(math.log(2.0), abs=1e-6)
    sft, _ = compute_loss(TrainConfig(loss="sft"), policy, None, sched, b)
    with torch.no_grad():
        xw = sched.add_noise(b.z_w, b.noise, b.t)
        ew = (policy(xw, b.t, encoder_hidden_states=b.cond.hidden.repeat_interleave(F, 0)).sample - b.noise) ** 2
    assert sft.item() == pytest.approx(ew.mean().item(), rel=1e-5)


def test_a_motion_only_step_moves_the_temporal_modules_and_nothing_else():
    policy = get_dummy_motion_unet()
    reference = copy.deepcopy(policy).eval()
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    policy.freeze_unet2d_params()  # AnimateDiff's fine-tune: the image UNet frozen, motion modules trained
    trainable = [p for p in policy.parameters() if p.requires_grad]
    assert trainable and all("motion_modules" in n for n, p in policy.named_parameters() if p.requires_grad)
    opt = torch.optim.SGD(trainable, lr=1.0)
    loss, _ = compute_loss(TrainConfig(loss="seppo", criterion="none"), policy, reference, _scheduler(), _batch(1))
    loss.backward()
    opt.step()
    moved = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all("motion_modules" in n for n in moved)


def test_clips_from_saved_folders_are_seeded_per_prompt_and_hub_ids_need_a_revision(tmp_path):
    from seppo.config import SamplingConfig
    from seppo.models.pipeline import ModelNotFound
    from seppo.models.video_pipeline import generate_clips, load_video_pipeline

    from .dummy import save_dummy_motion_adapter, save_dummy_pipeline

    base = save_dummy_pipeline(tmp_path / "base")
    adapter = save_dummy_motion_adapter(tmp_path / "adapter")
    pipe = load_video_pipeline(base, adapter)
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    s = SamplingConfig(sampler="ddim", steps=2, guidance=3.0)
    prompts = ["one small red circle on a white background, growing",
               "two large blue squares on a grey background, moving left"]
    both = generate_clips(pipe, prompts, [0, 0], s, frames=4, batch_size=2)
    assert both.shape == (2, 4, 32, 32, 3) and both.dtype == np.uint8
    alone = generate_clips(pipe, prompts[1:], [0], s, frames=4)
    assert np.abs(alone[0].astype(int) - both[1].astype(int)).max() <= 1  # batching changes nothing beyond rounding
    other_seed = generate_clips(pipe, prompts[1:], [1], s, frames=4)
    assert not np.array_equal(other_seed[0], alone[0])
    with pytest.raises(ModelNotFound, match="without a revision: pin one"):
        load_video_pipeline(base, "guoyww/animatediff-motion-adapter-v1-5-2")
    with pytest.raises(ModelNotFound, match="motion adapter folder"):
        load_video_pipeline(base, tmp_path / "nope")


def _web(tmp_path, n=6, frames=4):
    import pandas as pd

    from seppo.world.video import random_clip, render_clip

    rng = np.random.default_rng(0)
    clips = [random_clip(rng) for _ in range(n)]
    d = tmp_path / "web"
    d.mkdir()
    np.save(d / "clips.npy", np.stack([render_clip(c, 32, frames, rng) for c in clips]))
    pd.DataFrame({"caption": [c.caption() for c in clips]}).to_parquet(d / "captions.parquet", index=False)
    return d


def test_the_embedded_motion_adapter_trains_only_temporal_modules_and_loads_as_animatediff(tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from seppo.config import SamplingConfig, VideoBaseConfig
    from seppo.models.video_pipeline import generate_clips, load_video_pipeline
    from seppo.models.video_pretrain import pretrain_motion_adapter

    from .dummy import save_dummy_pipeline

    base, web = save_dummy_pipeline(tmp_path / "base"), _web(tmp_path)
    # AnimateDiff's recipe: the image model (UNet layers and text encoder) frozen
    cfg = VideoBaseConfig(steps=3, batch_size=2, spatial_lr=0.0, text_lr=0.0)
    summary = pretrain_motion_adapter(cfg, base, web, tmp_path / "adapter")
    assert summary["clips"] == 6 and summary["frames"] == 4 and summary["motion_parameters"] > 0
    # a second run into the same folder rewrites it byte for byte: every file, configs included (the adapter's
    # config once recorded the atomic write's random temporary folder in _name_or_path)
    first = {p.relative_to(tmp_path / "adapter"): p.read_bytes() for p in (tmp_path / "adapter").rglob("*") if p.is_file()}
    pretrain_motion_adapter(cfg, base, web, tmp_path / "adapter")
    again = {p.relative_to(tmp_path / "adapter"): p.read_bytes() for p in (tmp_path / "adapter").rglob("*") if p.is_file()}
    assert sorted(first) == sorted(again) and len(first) > 5
    for name in first:
        assert first[name] == again[name], name
    adapter_config = json.loads((tmp_path / "adapter/motion_adapter/config.json").read_text())
    assert adapter_config["_name_or_path"] == str(tmp_path / "adapter" / "motion_adapter")
    # the folder is theta_0 of the video arms (a whole AnimateDiffPipeline), its motion_adapter/ a MotionAdapter
    from seppo.models.pipeline import load_pipeline

    whole = load_pipeline(tmp_path / "adapter")
    assert type(whole).__name__ == "AnimateDiffPipeline" and type(whole.unet).__name__ == "UNetMotionModel"
    pipe = load_video_pipeline(base, tmp_path / "adapter" / "motion_adapter")
    for (n, a), (_, b) in zip(whole.unet.named_parameters(), pipe.unet.named_parameters()):
        assert torch.equal(a, b), n
    base_text = dict(CLIPTextModel.from_pretrained(base, subfolder="text_encoder").named_parameters())
    assert all(torch.equal(p, base_text[n]) for n, p in whole.text_encoder.named_parameters())
    image_unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    spatial = dict(image_unet.named_parameters())
    # the image model is frozen: every spatial weight of the AnimateDiff UNet is theta_0's
    for name, p in pipe.unet.named_parameters():
        if "motion_modules" not in name and name in spatial:
            assert torch.equal(p, spatial[name]), name
    clips = generate_clips(pipe, ["one small red circle on a white background, growing"], [0],
                           SamplingConfig(sampler="ddim", steps=2, guidance=2.0), frames=4)
    assert clips.shape == (1, 4, 32, 32, 3)


def test_frame_correlated_noise_keeps_unit_variance_and_correlates_frames_by_corr():
    from seppo.models.recipe import frame_correlated
    from seppo.training.plan import draw_noise

    g = torch.Generator().manual_seed(0)
    base = torch.randn((4000, 2, 3, 2, 2), generator=g)
    assert frame_correlated(base, 0.0, g) is base  # 0: nothing drawn, the historical noise unchanged
    x = frame_correlated(base, 0.81, torch.Generator().manual_seed(1))
    flat = x.permute(2, 0, 1, 3, 4).reshape(3, -1)  # frames x everything else
    assert flat.var(1).sub(1.0).abs().max() < 0.03
    r = torch.corrcoef(flat)
    assert (r[0, 1] - 0.81).abs() < 0.02 and (r[1, 2] - 0.81).abs() < 0.02
    # by hand: with the same generator state, sqrt(c) * shared + sqrt(1 - c) * own, the shared draw taken last
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    own = torch.randn((2, 1, 4, 2, 2), generator=g1)
    shared = torch.randn((2, 1, 1, 2, 2), generator=g1)
    want = 0.6 * shared + 0.8 * own
    got = frame_correlated(torch.randn((2, 1, 4, 2, 2), generator=g2), 0.36, g2)
    torch.testing.assert_close(got, want)
    # the training draws: corr 0 gives the draws of before, bit for bit; images refuse a frame correlation
    a = draw_noise(torch.Generator().manual_seed(3), 2, (1, 4, 2, 2), 1000)
    b = draw_noise(torch.Generator().manual_seed(3), 2, (1, 4, 2, 2), 1000, 0.0, 0.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="needs clip latents"):
        draw_noise(torch.Generator().manual_seed(3), 2, (4, 8, 8), 1000, 0.0, 0.5)


def test_the_video_base_records_its_frame_correlation_and_sampling_follows_it(tmp_path):
    from seppo.config import SamplingConfig, VideoBaseConfig
    from seppo.models.pipeline import load_pipeline
    from seppo.models.recipe import recipe_frame_correlation
    from seppo.models.video_pipeline import generate_clips, initial_latents
    from seppo.models.video_pretrain import pretrain_motion_adapter

    from .dummy import save_dummy_pipeline

    base, web = save_dummy_pipeline(tmp_path / "base"), _web(tmp_path)
    pretrain_motion_adapter(VideoBaseConfig(steps=2, batch_size=2, frame_noise_correlation=0.75), base, web,
                            tmp_path / "corr")
    assert recipe_frame_correlation(tmp_path / "corr") == 0.75 and recipe_frame_correlation(base) == 0.0
    pipe = load_pipeline(tmp_path / "corr")
    assert initial_latents(pipe, [torch.Generator().manual_seed(0)], 4, 0.0) is None
    lat = initial_latents(pipe, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)], 4, 0.75)
    assert lat.shape == (2, pipe.unet.config.in_channels, 4, pipe.unet.config.sample_size,
                         pipe.unet.config.sample_size)
    prompts, s = ["one small red circle on a white background, growing"] * 3, SamplingConfig(sampler="ddim", steps=2,
                                                                                            guidance=2.0)
    one = generate_clips(pipe, prompts, [0, 1, 2], s, frames=4, batch_size=1, frame_corr=0.75)
    three = generate_clips(pipe, prompts, [0, 1, 2], s, frames=4, batch_size=3, frame_corr=0.75)
    # each clip's noise from its own generator: the batch changes no draw (pixels only by float rounding, <= 1 level)
    assert np.abs(one.astype(int) - three.astype(int)).max() <= 1
    g = [torch.Generator().manual_seed(i) for i in (4, 5)]
    both = initial_latents(pipe, g, 4, 0.75)
    apart = torch.cat([initial_latents(pipe, [torch.Generator().manual_seed(i)], 4, 0.75) for i in (4, 5)])
    assert torch.equal(both, apart)
    independent = generate_clips(pipe, prompts, [0, 1, 2], s, frames=4, batch_size=3)
    assert not np.array_equal(one, independent)


def test_with_a_spatial_lr_the_video_base_saves_its_trained_image_layers(tmp_path):
    from diffusers import UNet2DConditionModel

    from seppo.config import VideoBaseConfig
    from seppo.models.pipeline import load_pipeline
    from seppo.models.video_pretrain import pretrain_motion_adapter

    from .dummy import save_dummy_pipeline

    base, web = save_dummy_pipeline(tmp_path / "base"), _web(tmp_path)
    summary = pretrain_motion_adapter(VideoBaseConfig(steps=2, batch_size=2, spatial_lr=1e-2), base, web,
                                      tmp_path / "tuned")
    assert summary["trained_parameters"] > summary["motion_parameters"] > 0
    spatial = dict(UNet2DConditionModel.from_pretrained(base, subfolder="unet").named_parameters())
    unet = load_pipeline(tmp_path / "tuned").unet
    moved = [n for n, p in unet.named_parameters() if n in spatial and not torch.equal(p, spatial[n])]
    assert moved and not any("motion_modules" in n for n in moved)


def test_min_snr_weighting_of_the_video_pretraining_loss_by_hand():
    from seppo.models.video_pretrain import pretrain_loss

    pred = torch.zeros(2, 1, 2, 1, 1)
    noise = torch.tensor([1.0, 3.0, 2.0, 2.0]).reshape(2, 1, 2, 1, 1)  # per-clip MSE 5.0 and 4.0
    alpha_bar = torch.tensor([0.9, 0.2])  # SNR 9 (clipped to gamma 5: weight 5/9) and 0.25 (weight 1)
    assert pretrain_loss(pred, noise, alpha_bar, 0.0).item() == pytest.approx(4.5)
    assert pretrain_loss(pred, noise, alpha_bar, 5.0).item() == pytest.approx((5.0 * 5 / 9 + 4.0) / 2)


def _script(name: str):
    """A module of scripts/ (not a package), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_scripts_frame_difference_term_by_hand():
    """scripts/video_base_recipe.py --motion-loss: only the error that changes from frame to frame is added."""
    from seppo.models.video_pretrain import pretrain_loss

    script = _script("video_base_recipe")
    pred = torch.zeros(2, 1, 2, 1, 1)
    noise = torch.tensor([1.0, 3.0, 2.0, 2.0]).reshape(2, 1, 2, 1, 1)  # clip 1 errs -1, -3 (moves); clip 2 -2, -2
    alpha_bar = torch.tensor([0.9, 0.2])
    loss = script.with_motion_term(pretrain_loss, 2.0)
    assert loss(pred, noise, alpha_bar, 0.0).item() == pytest.approx(4.5 + 2.0 * (4.0 + 0.0) / 2)
    assert loss(pred, noise, alpha_bar, 5.0).item() == pytest.approx((5.0 * 5 / 9 + 4.0) / 2 + 2.0 * (4.0 * 5 / 9) / 2)
    still = torch.full((1, 1, 4, 1, 1), 2.0)  # the same error in every frame: nothing added
    assert loss(torch.zeros_like(still), still, alpha_bar[:1], 5.0).item() == pytest.approx(
        pretrain_loss(torch.zeros_like(still), still, alpha_bar[:1], 5.0).item())


def test_the_guidance_scripts_ci_averages_sampling_seeds_before_resampling_captions():
    script = _script("video_guidance")
    # seed 0 then seed 1 over 3 captions: each caption's mean over seeds is 2, so no caption resample moves it
    assert script.paired_ci(np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0]), 3) == pytest.approx((2.0, 2.0, 2.0))
    mean, lo, hi = script.paired_ci(np.array([0.0, 0.0, 3.0, 0.0, 0.0, 3.0]), 3)
    assert mean == pytest.approx(1.0) and lo == pytest.approx(0.0) and hi == pytest.approx(3.0)


def test_the_video_base_saves_the_ema_of_its_weights_computed_by_hand(tmp_path):
    from seppo.config import VideoBaseConfig
    from seppo.models.pipeline import load_pipeline
    from seppo.models.video_pretrain import pretrain_motion_adapter

    from .dummy import save_dummy_pipeline

    base, web = save_dummy_pipeline(tmp_path / "base"), _web(tmp_path)

    def motion(steps, ema):
        out = tmp_path / f"s{steps}_ema{ema}"
        pretrain_motion_adapter(VideoBaseConfig(steps=steps, batch_size=2, spatial_lr=0.0, ema_decay=ema), base, web, out)
        return {n: p.detach() for n, p in load_pipeline(out).unet.named_parameters() if "motion_modules" in n}

    # the warm-up's first step runs at lr 0: one step saves the initial weights p0; two steps move them once (p2)
    p0, p2, ema = motion(1, 0.0), motion(2, 0.0), motion(2, 0.5)
    assert any(not torch.equal(p0[n], p2[n]) for n in p0)
    # EMA decays min(0.5, (1 + step) / (10 + step)): 0.1 after step 0 (p1 = p0), 2/11 after step 1
    for n in p0:
        torch.testing.assert_close(ema[n], p0[n] + (p2[n] - p0[n]) * (9 / 11), rtol=0, atol=1e-6)


def test_with_a_text_lr_the_video_base_saves_its_trained_text_encoder_and_the_pipeline_reads_it(tmp_path):
    from transformers import CLIPTextModel

    from seppo.config import VideoBaseConfig
    from seppo.models.pipeline import load_pipeline
    from seppo.models.video_pretrain import pretrain_motion_adapter

    from .dummy import save_dummy_pipeline

    base, web = save_dummy_pipeline(tmp_path / "base"), _web(tmp_path)
    frozen = pretrain_motion_adapter(VideoBaseConfig(steps=2, batch_size=2, spatial_lr=0.0, text_lr=0.0), base, web,
                                     tmp_path / "a")
    tuned = pretrain_motion_adapter(VideoBaseConfig(steps=2, batch_size=2, spatial_lr=0.0, text_lr=1e-2), base, web,
                                    tmp_path / "b")
    before = dict(CLIPTextModel.from_pretrained(base, subfolder="text_encoder").named_parameters())
    assert tuned["trained_parameters"] == frozen["trained_parameters"] + sum(p.numel() for p in before.values())
    for folder, moved in (("a", False), ("b", True)):
        after = dict(load_pipeline(tmp_path / folder).text_encoder.named_parameters())
        assert any(not torch.equal(after[n], before[n]) for n in before) is moved, folder
