"""The CLI is what the DVC stages call: every stage command exists and params errors are clear."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from seppo.cli import app
from seppo.config import Params

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_the_stage_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("world", "base-model", "base-samples", "check-params"):
        assert cmd in result.output


def test_every_dvc_stage_calls_a_cli_command_and_reads_known_params():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[0] == "seppo" and words[1] in commands, name
        for section in stage.get("params", []):
            assert section.split(".")[0] in Params.model_fields, (name, section)


def test_bad_params_file_exits_2_with_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("world:\n  image_size: 48\n")
    result = runner.invoke(app, ["check-params", "--params", str(bad)])
    assert result.exit_code == 2
    assert "world.image_size" in result.output and "32 or 64" in result.output


def test_check_params_prints_defaults(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("world:\n  seed: 7\n")
    result = runner.invoke(app, ["check-params", "--params", str(p)])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["world"]["seed"] == 7


def test_paper_preset_applies_and_replans(tmp_path, monkeypatch):
    import shutil

    import yaml
    from typer.testing import CliRunner

    from seppo.cli import app

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["preset", str(root / "configs/sd15-pickapic.yaml")])
    assert res.exit_code == 0, res.output
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert p["train"]["beta"] == 2000.0 and p["train"]["grad_accum"] == 256 and p["train"]["processes"] == 8
    assert p["evaluate"]["sampling"] == {"sampler": "pndm", "steps": 50, "guidance": 7.5}
    assert p["evaluate"]["models"]["hps_v21_checkpoint"]  # untouched keys of a nested section survive
    dvc = (tmp_path / "dvc.yaml").read_text()
    assert "train_7:" in dvc and "accelerate launch --config_file configs/accelerate/multi_gpu.yaml" in dvc
    assert "scorer_model:" not in dvc  # the real PickScore replaces the embedded one
    assert p["evaluate"]["models"]["pickscore_model"] == "yuvalkirstain/PickScore_v1"

    res = CliRunner().invoke(app, ["preset", str(root / "configs/sdxl-pickapic.yaml")])
    assert res.exit_code == 0, res.output
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert p["base_model"]["source"] == "stabilityai/stable-diffusion-xl-base-1.0" and p["train"]["beta"] == 5000.0
    assert "accelerate launch --config_file configs/accelerate/zero2.yaml" in (tmp_path / "dvc.yaml").read_text()


def test_download_models_fails_offline_without_touching_the_network(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from seppo.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "params.yaml").write_text("evaluate:\n  models:\n    pickscore_model: yuvalkirstain/PickScore_v1\n")
    res = CliRunner().invoke(app, ["download-models", "--params", str(tmp_path / "params.yaml"), "--scorers-only"])
    assert res.exit_code != 0  # offline mode: the hub refuses instead of downloading


def test_download_models_skips_weights_the_pipeline_builds(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from seppo.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = {k: None for k in ("clip_model", "aesthetic_head", "hps_v20_checkpoint", "hps_v21_checkpoint",
                                "imagereward_checkpoint", "imagereward_med_config", "imagereward_tokenizer")}
    models.update(pickscore_model="models/pickscore", pickscore_processor="models/pickscore")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"models": models}}))
    res = CliRunner().invoke(app, ["download-models", "--params", str(tmp_path / "params.yaml"), "--scorers-only"])
    assert res.exit_code == 0, res.output  # not mistaken for a Hub repo named "models/pickscore"
    assert res.output.count("built by the pipeline, skipped") == 2


def test_help_texts_are_plain_text():
    """No reStructuredText markup (``x``, :func:) nor backticks printed literally in any help page."""
    pages = [runner.invoke(app, ["--help"])]
    for c in app.registered_commands:
        pages.append(runner.invoke(app, [c.name or c.callback.__name__.replace("_", "-"), "--help"]))
    for res in pages:
        assert res.exit_code == 0, res.output
        assert "`" not in res.output and ":func:" not in res.output and ":class:" not in res.output, res.output


def test_unknown_key_suggests_the_near_one(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  round: 3\n")
    res = runner.invoke(app, ["check-params", "--params", str(p)])
    assert res.exit_code == 2
    assert "train.round: unknown key; did you mean train.rounds?" in res.output
    # the same through an override, as `dvc exp run -S` would pass it
    (tmp_path / "ok.yaml").write_text("{}\n")
    res = runner.invoke(app, ["plan", "--params", str(tmp_path / "ok.yaml"), "--out", str(tmp_path / "dvc.yaml"),
                              "--set", "train.lr_shedule=cosine"])
    assert res.exit_code == 2 and "did you mean train.lr_schedule?" in res.output
    assert not (tmp_path / "dvc.yaml").exists()
    res = runner.invoke(app, ["plan", "--params", str(tmp_path / "ok.yaml"), "--out", str(tmp_path / "dvc.yaml"),
                              "--set", "train.lr"])
    assert res.exit_code == 2 and "expected section.key=value" in res.output


def test_plan_overrides_and_preset_merge(tmp_path):
    from seppo.params_edit import apply_overrides, merge

    data = {"train": {"lr": 1e-5, "ref_sampling": {"steps": 20, "guidance": 7.5}}}
    out = apply_overrides(data, ["train.lr=3e-5", "train.ref_sampling.steps=10", "evaluate.seeds=[0, 1, 2]"])
    assert out == {"train": {"lr": 3e-5, "ref_sampling": {"steps": 10, "guidance": 7.5}},
                   "evaluate": {"seeds": [0, 1, 2]}}
    assert data["train"]["lr"] == 1e-5  # the input is not modified
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "c": [1]}) == {"a": {"x": 1, "y": 3}, "b": 1, "c": [1]}
    (tmp_path / "params.yaml").write_text("train:\n  rounds: 2\n")
    res = runner.invoke(app, ["plan", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "dvc.yaml"),
                              "--set", "train.rounds=4"])
    assert res.exit_code == 0, res.output
    assert "train_4:" in (tmp_path / "dvc.yaml").read_text()
    assert (tmp_path / "params.yaml").read_text() == "train:\n  rounds: 2\n"  # overrides never write params
