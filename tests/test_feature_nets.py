"""The embedded FID / FVD feature networks (seppo.evaluation.feature_nets) and how FeatureNet reads them."""

import json

import numpy as np
import pytest
import torch

from seppo.config import Params, VideoFeaturesConfig, load_params
from seppo.evaluation.feature_nets import (build_trunk, clip_labels, read_meta, render_clips, render_frames,
                                           run_video_features, save_trunk)
from seppo.evaluation.video_metrics import FeatureNet, fid, frechet_distance, fvd
from seppo.world.video import CHANGES


def test_rendered_training_clips_carry_what_was_drawn():
    clips, labels = render_clips(60, 32, 8, np.random.default_rng(3), frozen=0.5)
    names = clip_labels().names
    assert clips.shape == (60, 8, 32, 32, 3) and clips.dtype == np.uint8 and labels.shape == (60, len(names))
    change, flicker = labels[:, names.index("change")], labels[:, names.index("flicker")]
    frozen = change == len(CHANGES)
    assert 10 < frozen.sum() < 50
    for clip, held in zip(clips, frozen):  # "none" = every frame is the first one; any other change moves pixels
        assert (clip == clip[:1]).all() == held
    assert not flicker[frozen].any()  # a held frame cannot flicker
    for j, k in enumerate(clip_labels().classes):
        assert labels[:, j].min() >= 0 and labels[:, j].max() < k, names[j]
    images, ilabels = render_frames(40, 32, np.random.default_rng(3))
    assert images.shape == (40, 32, 32, 3) and set(ilabels[:, -1]) <= {0, 1, 2, 3}


def _trunks(tmp_path, frames=8):
    torch.manual_seed(0)
    paths = {}
    for arch, name in (("shapeland_frame", "frame"), ("shapeland_clip", "clip")):
        paths[name] = tmp_path / f"{name}.safetensors"
        save_trunk(build_trunk(arch, 8, 16).state_dict(), paths[name], arch, 8, 16, 32, frames)
    return paths


def test_feature_net_reads_an_embedded_trunk_from_its_metadata(tmp_path):
    paths = _trunks(tmp_path)
    assert read_meta(paths["clip"]) == {"arch": "shapeland_clip", "width": 8, "dim": 16, "input_size": 32, "frames": 8}
    # the arch argument (the torchvision default) gives way to the file's own record
    frames, clips = FeatureNet("fid", "inception_v3", paths["frame"]), FeatureNet("fvd", "r3d_18", paths["clip"])
    assert (frames.arch, clips.arch) == ("shapeland_frame", "shapeland_clip")
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 32, 32, 3), dtype=np.uint8)
    assert frames.features(x).shape == (40, 16) and clips.features(x).shape == (5, 16)
    # a clip network named as FID's network is refused, naming the file
    with pytest.raises(ValueError, match="clip.safetensors.*not a FID"):
        FeatureNet("fid", "inception_v3", paths["clip"])
    # identical sets are 0 apart, a shifted set is not
    assert fvd(x, x, clips) == pytest.approx(0.0, abs=1e-6) and fid(x, x, frames) == pytest.approx(0.0, abs=1e-6)
    assert fvd(x, np.clip(x.astype(int) + 60, 0, 255).astype(np.uint8), clips) > 1e-4


def test_a_truncated_trunk_file_is_refused_with_its_path(tmp_path):
    paths = _trunks(tmp_path)
    state = build_trunk("shapeland_clip", 8, 16).state_dict()
    state.pop(next(iter(state)))
    bad = tmp_path / "bad.safetensors"
    save_trunk(state, bad, "shapeland_clip", 8, 16, 32)
    with pytest.raises(ValueError, match="bad.safetensors.*do not fit"):
        FeatureNet("fvd", "r3d_18", bad)
    assert paths["clip"].exists()


def test_the_stage_writes_both_networks_and_a_sanity_table(tmp_path):
    cfg = VideoFeaturesConfig(frame_images=200, frame_steps=3, clips=100, clip_steps=3, sanity_clips=12, batch_size=16)
    metrics = tmp_path / "metrics.json"
    result = run_video_features(cfg, 32, 6, tmp_path / "nets", metrics)
    assert sorted(p.name for p in (tmp_path / "nets").iterdir()) == ["clip.safetensors", "frame.safetensors",
                                                                      "sanity.json"]
    table = result["sanity"]["vs_reference"]
    assert table["clean"] == {"fid": 0.0, "fvd": 0.0}
    assert set(table) == {"clean", "clean_redraw", "frozen", "other_change", "flicker", "shake", "frame_noise"}
    assert all(v["fid"] >= 0 and v["fvd"] >= 0 for v in table.values())
    assert json.loads(metrics.read_text()) == result and (tmp_path / "timing" / "metrics.json").exists()
    again = run_video_features(cfg, 32, 6, tmp_path / "nets2", tmp_path / "metrics2.json")
    assert again == result  # every draw seeded
    assert (tmp_path / "nets/clip.safetensors").read_bytes() == (tmp_path / "nets2/clip.safetensors").read_bytes()


def test_the_sanity_sets_break_one_thing_each():
    from seppo.evaluation.feature_nets import sanity_sets

    sets = sanity_sets(10, 32, 8, seed=0)
    assert all(v.shape == (10, 8, 32, 32, 3) for v in sets.values())
    assert (sets["frozen"] == sets["frozen"][:, :1]).all() and not (sets["clean"] == sets["clean"][:, :1]).all()
    assert not np.array_equal(sets["clean"], sets["clean_redraw"])
    noise = np.abs(sets["frame_noise"].astype(int) - sets["clean"].astype(int)).mean()
    assert noise > 3


def test_auto_names_the_embedded_networks_only_on_the_embedded_video_world(tmp_path):
    assert Params().video.fid_weights == "models/video_features/frame.safetensors"
    assert Params().video.fvd_weights == "models/video_features/clip.safetensors"
    real = Params(video={"source": "/data/clips"})
    assert real.video.fid_weights is None and real.video.fvd_weights is None
    named = Params(video={"source": "/data/clips", "fvd_weights": "torchvision"})
    assert named.video.fvd_weights == "torchvision" and named.video.fid_weights is None


def test_the_video_plan_trains_the_networks_before_the_evaluation_reads_them():
    from seppo.planning.dvc import build_video

    params = load_params("params.yaml")
    stages = build_video(params)["stages"]
    assert stages["video_features"]["outs"] == ["models/video_features"]
    assert "models/video_features" in stages["video_evaluate"]["deps"]
    off = build_video(params.model_copy(update={"video": params.video.model_copy(
        update={"fid_weights": None, "fvd_weights": None})}))["stages"]
    assert "video_features" not in off and "models/video_features" not in off["video_evaluate"]["deps"]
