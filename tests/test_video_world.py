"""Shapeland clips: captions, rendering, and the ground-truth clip utility on crafted cases."""

import numpy as np
import pandas as pd
import pytest

from seppo.world.render import Defects
from seppo.world.scene import Scene
from seppo.world.video import (
    CHANGES,
    WEIGHTS,
    ClipCaptionError,
    ClipDefects,
    ClipScene,
    clip_skill_generator,
    clip_utility,
    feasible,
    parse_clip_caption,
    random_clip,
    render_clip,
    true_clip_utility,
)

RED_CIRCLE = Scene("circle", "red", 1, "small", None, "white")


def test_captions_round_trip_and_bad_ones_say_what_is_wrong():
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = random_clip(rng)
        assert parse_clip_caption(c.caption()) == c
    assert ClipScene(RED_CIRCLE, "moving right").caption() == "one small red circle on a white background, moving right"
    with pytest.raises(ClipCaptionError, match="does not end with a change"):
        parse_clip_caption("one small red circle on a white background")
    with pytest.raises(ClipCaptionError, match="does not state a shape"):
        parse_clip_caption("one small red blob on a white background, growing")
    with pytest.raises(ValueError, match="names no position"):
        ClipScene(Scene("circle", "red", 1, "small", "left", "white"), "moving up")
    with pytest.raises(ValueError, match="starts large"):
        ClipScene(RED_CIRCLE, "shrinking")


def test_clean_clips_of_every_change_score_full_marks():
    rng = np.random.default_rng(1)
    seen, us = set(), []
    while len(seen) < len(CHANGES) or len(us) < 60:
        c = random_clip(rng)
        seen.add(c.change)
        us.append(clip_utility(render_clip(c, 32, 8, rng), c.caption()).utility)
    assert np.mean(us) > 0.98 and np.min(us) > 0.85


def test_the_wrong_change_costs_exactly_the_change_weight():
    rng = np.random.default_rng(2)
    left = render_clip(ClipScene(RED_CIRCLE, "moving left"), 32, 8, rng)
    right = ClipScene(RED_CIRCLE, "moving right")
    u_ok = clip_utility(left, ClipScene(RED_CIRCLE, "moving left"))
    u_bad = clip_utility(left, right)
    assert u_ok.utility == pytest.approx(1.0)
    assert u_bad.parts["change"] == 0.0 and u_bad.utility == pytest.approx(1.0 - WEIGHTS["change"])
    # a clip played backwards shows the opposite change
    grow = ClipScene(Scene("square", "blue", 2, "small", None, "grey"), "growing")
    frames = render_clip(grow, 32, 8, rng)
    shrink = ClipScene(Scene("square", "blue", 2, "large", None, "grey"), "shrinking")
    assert clip_utility(frames, grow).parts["change"] == 1.0
    assert clip_utility(frames[::-1], shrink).parts["change"] == 1.0
    assert clip_utility(frames[::-1], grow).parts["change"] == 0.0
    # a frozen clip (the first frame repeated) does not move
    assert clip_utility(np.repeat(left[:1], 8, axis=0), ClipScene(RED_CIRCLE, "moving left")).parts["change"] == 0.0


def test_flicker_and_shake_break_temporal_consistency_only():
    c = ClipScene(Scene("triangle", "green", 1, "large", None, "black"), "turning yellow")
    assert feasible(c, 32)
    clean = clip_utility(render_clip(c, 32, 12, np.random.default_rng(3)), c)
    flicker = clip_utility(render_clip(c, 32, 12, np.random.default_rng(3), ClipDefects(flicker=0.5)), c)
    shake = clip_utility(render_clip(c, 32, 12, np.random.default_rng(3), ClipDefects(jitter_px=4.0)), c)
    assert clean.parts["consistency"] == 1.0
    assert flicker.parts["consistency"] < 0.8 and shake.parts["consistency"] < 0.8
    noisy = clip_utility(render_clip(c, 32, 12, np.random.default_rng(3), ClipDefects(Defects(noise_std=20.0))), c)
    assert noisy.parts["quality"] < clean.parts["quality"] - 0.2


def test_a_colour_change_through_the_background_is_infeasible():
    # green -> purple passes within 42 RGB units of grey halfway: the object would vanish mid-clip
    assert not feasible(ClipScene(Scene("circle", "green", 1, "large", None, "grey"), "turning purple"), 32)
    assert feasible(ClipScene(Scene("circle", "green", 1, "large", None, "white"), "turning purple"), 32)
    assert not feasible(ClipScene(Scene("square", "red", 3, "large", None, "white"), "moving right"), 32)


def test_pixel_utility_tracks_the_annotators_and_rises_with_skill():
    rng = np.random.default_rng(4)
    means = []
    for skill in (0.0, 0.5, 1.0):
        g = clip_skill_generator(skill)
        px, truth = [], []
        for _ in range(60):
            c = random_clip(rng)
            frames, shown, defects = g.generate(c, 32, 8, rng)
            px.append(clip_utility(frames, c).utility)
            truth.append(true_clip_utility(c, shown, defects))
        assert np.corrcoef(px, truth)[0, 1] > 0.6, skill
        means.append(np.mean(px))
    assert means[0] < means[1] < means[2]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clip_skill_generator(1.5)


def test_clip_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(T >= 2, H, W, 3\)"):
        clip_utility(np.zeros((32, 32, 3), np.uint8), ClipScene(RED_CIRCLE, "growing"))


@pytest.mark.slow
def test_the_video_world_writes_what_the_video_ingest_reads(tmp_path):
    from seppo.config import VideoWorldConfig
    from seppo.data.video_ingest import ClipPolicy, ingest_clips, load_clips
    from seppo.world.video_stage import run_video_world

    cfg = VideoWorldConfig(train_prompts=12, pairs_per_prompt=2, eval_prompts=4, real_per_eval_prompt=2, frames=6)
    m = run_video_world(cfg, tmp_path / "vw")
    assert m["pairs"] == 24 and m["winners"] == 24 - m["ties"] and m["real_clips"] == 8
    # the winners are better than the losers on the pixel utility, the clean references near perfect
    assert m["winners_mean_utility"] > m["losers_mean_utility"] and m["real_mean_utility"] > 0.95
    counts = ingest_clips(tmp_path / "vw/winners", tmp_path / "ing", ClipPolicy(frames=6))
    assert counts["kept"] == m["winners"] and counts["quarantined"] == 0
    captions, clips = load_clips(tmp_path / "ing")
    assert clips.shape == (m["winners"], 6, 32, 32, 3)
    prompts = pd.read_parquet(tmp_path / "vw/prompts.parquet")
    held_out = set(prompts[prompts.split == "eval"].caption)
    assert not held_out & set(captions)  # evaluation captions never reach training
    # the same params write the same bytes
    run_video_world(cfg, tmp_path / "vw2")
    for rel in ("winners/captions.csv", "eval_real/clips/eval-0000-1/005.png", "pairs_truth.parquet"):
        assert (tmp_path / "vw" / rel).read_bytes() == (tmp_path / "vw2" / rel).read_bytes(), rel
