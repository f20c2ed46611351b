"""dvc.yaml is generated from params: committed copy up to date, rounds re-plan the graph."""

from pathlib import Path

import yaml

from seppo.config import load_params, parse_params
from seppo.planning.dvc import build, render

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_what_params_generate():
    params = load_params(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == render(params), "dvc.yaml is stale: run `seppo plan`"


def test_rounds_replan_the_graph_and_chain_the_bank():
    g2 = build(parse_params({"train": {"rounds": 2}}))["stages"]
    g4 = build(parse_params({"train": {"rounds": 4}}))["stages"]
    assert [s for s in g2 if s.startswith("train_")] == ["train_1", "train_2"]
    assert [s for s in g4 if s.startswith("train_")] == ["train_1", "train_2", "train_3", "train_4"]
    t3 = g4["train_3"]
    assert {"models/base", "models/round_1", "models/round_2"} <= set(t3["deps"])
    assert "models/round_3" not in t3["deps"] and t3["outs"][0] == "models/round_3"
    assert g4["select_1"]["deps"][0] == "models/base"
    assert g4["evaluate"]["cmd"].count("--images") == 5
    assert "evaluate" not in g4["eval_round_2"]["params"]  # scorers changes do not regenerate images


def test_every_output_is_produced_by_exactly_one_stage():
    stages = build(parse_params({"train": {"rounds": 3}}))["stages"]
    outs = []
    for s in stages.values():
        for o in s.get("outs", []) + s.get("metrics", []) + s.get("plots", []):
            outs.append(o if isinstance(o, str) else next(iter(o)))
    assert len(outs) == len(set(outs))
    produced = set(outs)
    for name, s in stages.items():  # every data dep is produced upstream (or is source code, or the
        for d in s["deps"]:          # study's aggregate / the probe, which `seppo study` / `seppo probe` write
            if not d.startswith(("src/", "reports/study/", "reports/probe/")):  # outside the graph
                assert any(d == o or d.startswith(o + "/") for o in produced), (name, d)


def test_yaml_is_valid_for_dvc():
    text = render(parse_params({}))
    data = yaml.safe_load(text)
    assert set(data) == {"stages", "plots"}


def test_adding_rounds_leaves_earlier_rounds_untouched():
    g3 = build(parse_params({"train": {"rounds": 3}}))["stages"]
    g5 = build(parse_params({"train": {"rounds": 5}}))["stages"]
    for k in (1, 2, 3):
        for kind in ("select", "refsamples", "train"):
            name = f"{kind}_{k}"
            assert g3[name] == g5[name], name
            assert "train" not in g3[name]["params"] and "train.rounds" not in g3[name]["params"]
    assert "train.lr" in g3["train_1"]["params"] and "train.lr" not in g3["select_1"]["params"]


def test_the_embedded_pickscore_is_a_dep_of_evaluate_only_when_used():
    with_ps = build(parse_params({"evaluate": {"scorers": ["shapeland_utility", "pickscore_x100"],
                                               "models": {"pickscore_model": "models/pickscore",
                                                          "pickscore_processor": "models/pickscore"}}}))
    assert "models/pickscore" in with_ps["stages"]["evaluate"]["deps"]
    assert with_ps["stages"]["scorer_model"]["outs"] == ["models/pickscore"]
    without = build(parse_params({"scorer_model": {"enabled": False},
                                  "evaluate": {"scorers": ["shapeland_utility"]}}))
    assert "scorer_model" not in without["stages"]
    assert "models/pickscore" not in without["stages"]["evaluate"]["deps"]


def test_plots_never_mix_scorer_scales_and_overlay_rounds():
    params = parse_params({"train": {"rounds": 2}, "evaluate": {"scorers": ["shapeland_utility", "pickscore_x100"]}})
    plots = {next(iter(p)): next(iter(p.values())) for p in build(params)["plots"]}
    # one figure per scorer: its mean and CI bounds, nothing of another scorer
    assert plots["eval_pickscore_x100"]["y"] == {
        "reports/plots/eval_rounds.csv": ["pickscore_x100", "pickscore_x100_ci_low", "pickscore_x100_ci_high"]}
    assert plots["eval_shapeland_utility"]["x"] == "round"
    # one figure per training series, one line per round
    assert plots["train_loss"]["y"] == {"runs/round_1/live/plots/metrics/train/loss.tsv": "loss",
                                        "runs/round_2/live/plots/metrics/train/loss.tsv": "loss"}
    assert not any(k.startswith("runs/") for k in plots)  # no per-round figure of every series


def test_the_ingest_stage_depends_on_the_real_source():
    def ingest_deps(**ingest):
        # a mirror is not the embedded world: no embedded PickScore (a cross-section rule of the config)
        other = {} if "source" not in ingest else {"scorer_model": {"enabled": False}}
        return build(parse_params({"ingest": ingest, **other}))["stages"]["ingest"]

    assert ingest_deps()["deps"][0] == "data/world/pickapic"  # the embedded world
    mirror = ingest_deps(source="/data/pickapic_v2/data/")
    assert mirror["deps"][0] == "/data/pickapic_v2/data"
    assert not any(d.startswith("data/world") for d in mirror["deps"])
    assert ingest_deps(source="/data/pickapic_v2/data/train-*.parquet")["deps"][0] == "/data/pickapic_v2/data"
    assert ingest_deps(source="mirror/*/train-*.tar")["deps"][0] == "mirror"
    sha = "0123456789abcdef0123456789abcdef01234567"
    hub = ingest_deps(source="someone/pickapic_v2_mirror", revision=sha)
    assert all(d.startswith("src/") for d in hub["deps"]) and {"ingest.source", "ingest.revision"} <= set(hub["params"])
    import pytest

    from seppo.data.sources import SourceError

    with pytest.raises(SourceError, match="set ingest.revision to a commit sha"):
        ingest_deps(source="someone/pickapic_v2_mirror", revision="main")


def test_committed_video_dvc_yaml_is_what_params_generate():
    from seppo.planning.dvc import render_video

    params = load_params(ROOT / "params.yaml")
    assert (ROOT / "video/dvc.yaml").read_text() == render_video(params), "video/dvc.yaml is stale: run `seppo plan`"


def test_the_video_graph_chains_each_arm_from_its_own_theta0_and_images_never_run_it():
    from seppo.planning.dvc import build_video

    image = build(parse_params({"train": {"rounds": 2}}))["stages"]
    assert not any(n.startswith("video") for n in image)  # `dvc repro` (images) is not slowed by the video path
    g = build_video(parse_params({"train": {"rounds": 2}, "video": {"arms": ["seppo", "sft", "dpo"]}}))["stages"]
    assert all(s["wdir"] == ".." for s in g.values())  # paths from the project root
    assert {"video_train_1", "video_train_2", "video_sft_train_2", "video_dpo_train_2"} <= set(g)
    assert "video_sft_refsamples_1" not in g and "video_dpo_refsamples_1" not in g  # baselines read no samples
    t2 = g["video_train_2"]
    assert {"models/video_base", "models/video_round_1", "data/video_refsamples/round_2"} <= set(t2["deps"])
    assert t2["outs"][0] == "models/video_round_2" and "--arm seppo" in t2["cmd"]
    assert "models/video_round_1" not in g["video_sft_train_2"]["deps"]  # arms never share checkpoints
    assert g["video_evaluate"]["cmd"].count("--clips") == 1 + 3 * 2
    assert "video.trainable" in g["video_train_1"]["params"] and "video.trainable" not in g["video_select_1"]["params"]
    outs = [o if isinstance(o, str) else next(iter(o)) for s in g.values() for o in s.get("outs", []) + s.get("metrics", [])]
    assert len(outs) == len(set(outs))
    produced = set(outs) | {"models/base"}  # the image pipeline's theta_0 is upstream (dvc.yaml)
    for name, s in g.items():
        for d in s["deps"]:
            # the video study's committed aggregate (seppo video-study, outside the graph) feeds the report
            if not d.startswith(("src/", "data/video_world/", "reports/video/study/")):
                assert any(d == o or d.startswith(o + "/") for o in produced), (name, d)


def test_video_train_overrides_are_validated_at_load():
    import pytest

    from seppo.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="unknown train keys"):
        parse_params({"video": {"train_overrides": {"updates_per_rund": 3}}})
    with pytest.raises((ConfigError, ValueError), match="micro_batch"):
        parse_params({"video": {"train_overrides": {"micro_batch": 0}}})


def test_the_paper_video_preset_plans_no_embedded_world_and_launches_on_gpus(tmp_path):
    import shutil

    from seppo.planning.dvc import build_video
    from seppo.params_edit import apply_preset

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    p = apply_preset(tmp_path / "params.yaml", ROOT / "configs/animatediff-chronomagic.yaml")
    g = build_video(p)["stages"]
    assert "video_world" not in g and "data/video_world/web" not in g["video_base"]["deps"]
    assert g["video_ingest"]["deps"][0] == "/data/chronomagic/train"  # the mirror is the ingest's dep
    assert g["video_train_7"]["cmd"].startswith("accelerate launch --config_file configs/accelerate/multi_gpu.yaml")
    # the clips of every checkpoint are split over the evaluation's processes
    assert g["video_eval_sft_round_7"]["cmd"] == ("accelerate launch --config_file configs/accelerate/multi_gpu.yaml "
                                                  "-m seppo.cli video-eval-generate --checkpoint "
                                                  "models/video_sft_round_7 --name sft_round_7")
    assert "distributed.py" in " ".join(g["video_eval_base"]["deps"])
    assert p.video.frames == 16 and p.video.sample_frames == "uniform" and p.video.trainable == "motion"
