"""The round machinery on a tiny random SD pipeline: bank, selection, reference samples, training,
resume after a kill, non-finite losses, the fused 2B forward."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seppo.config import CacheConfig, IngestConfig, TrainConfig
from seppo.data.cache import run_cache
from seppo.data.ingest import run_ingest
from seppo.layout import Layout
from seppo.training.plan import ref_sample_keys, round_rows
from seppo.training.reference_samples import run_refsamples
from seppo.training.selection import run_select
from seppo.models.conditioning import as_cond
from seppo.training.forward import MicroBatch, compute_loss
from seppo.training.trainer import TrainingDiverged, run_train
from seppo.training.losses import per_sample_error, seppo_loss
from tests.test_data_ingest import row, write_shard

TINY = dict(criterion="sign", updates_per_round=4, micro_batch=2, lr=1e-3, checkpoint_every=2, ref_batch_size=8,
            ref_sampling={"sampler": "ddim", "steps": 2, "guidance": 3.0})


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_pipeline_dir):
    """A project root with theta_0 (tiny random pipeline) and a latent cache of 12 winners."""
    return make_project(tmp_path_factory.mktemp("proj"), tiny_pipeline_dir,
                        [f"a red circle {i % 4}" for i in range(12)])


def make_project(root: Path, pipeline_dir, captions: list[str]) -> Path:
    """theta_0 copied from ``pipeline_dir`` and a latent cache of one winner per caption."""
    shutil.copytree(pipeline_dir, root / "models" / "base")
    src = root / "src"
    src.mkdir()
    write_shard(src / "s.parquet", [row(i, caption=c) for i, c in enumerate(captions)])
    run_ingest(IngestConfig(source=str(src)), root / "data" / "ingest", root / "m1.json")
    run_cache(CacheConfig(), root / "data" / "ingest", root / "models" / "base", root / "data" / "cache",
              root / "m2.json")
    return root


def fresh(project, tmp_path) -> Path:
    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    os.symlink(project / "models" / "base", root / "models" / "base")
    os.symlink(project / "data" / "cache", root / "data" / "cache")
    return root


def run_round(cfg, k, root):
    lay = Layout(root)
    run_select(cfg, k, lay)
    run_refsamples(cfg, k, lay, root / "data" / "cache")
    return run_train(cfg, k, lay, root / "data" / "cache")


def unet_state(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def test_round_rows_are_a_deterministic_stream():
    a = round_rows(10, 1, 6, seed=0)
    b = round_rows(10, 2, 6, seed=0)
    assert len(a) == len(b) == 6
    assert sorted(np.concatenate([a, b[:4]]).tolist()) == list(range(10))  # one epoch, no repeats
    assert np.array_equal(a, round_rows(10, 1, 6, seed=0)) and not np.array_equal(a, round_rows(10, 1, 6, 1))


def test_per_prompt_reference_samples_are_shared_by_a_prompts_winners():
    idx, prompts, seeds = ref_sample_keys(["a", "b", "a", "a"], ["u1", "u2", "u3", "u4"], "per_prompt", 2, 1, 0)
    assert prompts == ["a", "a", "b", "b"] and idx == [0, 2, 1, 0]
    idx, prompts, seeds = ref_sample_keys(["a", "b", "a"], ["u1", "u2", "u3"], "per_winner", 2, 1, 0)
    assert idx == [0, 1, 2] and len(set(seeds)) == 3


def test_two_rounds_build_a_loadable_bank(project, tmp_path):
    from diffusers import StableDiffusionPipeline

    root = fresh(project, tmp_path)
    cfg = TrainConfig(rounds=2, strategy="latest", **TINY)
    s1 = run_round(cfg, 1, root)
    s2 = run_round(cfg, 2, root)
    sel2 = json.loads((root / "runs/round_2/reference.json").read_text())
    assert sel2["bank"] == [str(root / "models/base"), str(root / "models/round_1")]
    assert sel2["reference"] == str(root / "models/round_1") == s2["reference"]  # latest
    assert s1["reference"] == str(root / "models/base")
    settings = json.loads((root / "data/refsamples/round_2/settings.json").read_text())
    assert settings["checkpoint"] == sel2["reference"]  # same checkpoint samples and scores
    assert settings["samples"] == 4 * 2 and settings["steps"] == 2
    for k in (1, 2):
        pipe = StableDiffusionPipeline.from_pretrained(root / f"models/round_{k}", safety_checker=None)
        assert pipe.unet is not None
    assert not (root / "runs/state/round_2").exists()  # resumable state removed at the end
    w0, w1, w2 = (unet_state(root / p) for p in ("models/base", "models/round_1", "models/round_2"))
    assert any(not torch.equal(w0[n], w1[n]) for n in w0) and any(not torch.equal(w1[n], w2[n]) for n in w1)
    assert (root / "runs/round_1/live/metrics.json").exists()
    logged = json.loads((root / "runs/round_1/live/metrics.json").read_text())["train"]
    assert {"loss", "flip_rate", "implicit_acc", "d_w", "d_r", "lr", "grad_norm"} <= set(logged)


def test_first_update_of_round_one_is_a_tie(project, tmp_path):
    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1})
    run_round(cfg, 1, root)
    tsv = (root / "runs/round_1/live/plots/metrics/train/tie_rate.tsv").read_text().splitlines()
    assert float(tsv[1].split("\t")[1]) == 1.0  # policy == theta_0 == reference: s = 0 everywhere


def _train_cmd(root):
    return [sys.executable, "-m", "seppo.cli", "train", "-k", "1", "--root", str(root),
            "--params", str(root / "params.yaml")]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(project, tmp_path):
    cfg = TrainConfig(**{**TINY, "updates_per_round": 6, "log_every": 2})
    roots = []
    for name in ("a", "b"):
        root = fresh(project, tmp_path / name)
        (root / "params.yaml").write_text(yaml.safe_dump({"train": cfg.model_dump()}))
        run_select(cfg, 1, Layout(root))
        run_refsamples(cfg, 1, Layout(root), root / "data/cache")
        roots.append(root)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a: uninterrupted
    subprocess.run(_train_cmd(roots[0]), check=True, env=env, capture_output=True)
    # b: killed with SIGKILL once the state at update 4 is on disk, then the same command again
    proc = subprocess.Popen(_train_cmd(roots[1]), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True)
    for line in proc.stdout:
        if "state saved at update 4" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (roots[1] / "models/round_1").exists()
    shutil.rmtree(roots[1] / "runs/round_1/live")  # as `dvc repro` removes a stage's outputs before re-running it
    out = subprocess.run(_train_cmd(roots[1]), check=True, env=env, capture_output=True, text=True)
    assert "resuming from update 4" in out.stdout
    a, b = unet_state(roots[0] / "models/round_1"), unet_state(roots[1] / "models/round_1")
    assert all(torch.equal(a[n], b[n]) for n in a)  # bitwise on CPU
    steps = (roots[1] / "runs/round_1/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    # no duplicated log rows; the replay keeps log_every and logs each row at its update number
    assert [int(s.split("\t")[0]) for s in steps] == [0, 2, 4]
    # the DVCLive summary byte for byte (its keys in first-logged order: the replay must keep them)
    summary = [(r / "runs/round_1/live/metrics.json").read_bytes() for r in roots]
    assert summary[0] == summary[1]
    # the round's record covers all 6 updates, exactly as the uninterrupted run's
    for rel in ("reports/metrics/round_1.json", "models/round_1/seppo_round.json"):
        a_text, b_text = ((r / rel).read_text().replace(str(r), "ROOT") for r in roots)
        assert a_text == b_text, rel
    for name in ("loss.tsv", "flip_rate.tsv"):
        a_rows = [r.split("\t")[::2] for r in (roots[0] / "runs/round_1/live/plots/metrics/train" / name).read_text().splitlines()]
        b_rows = [r.split("\t")[::2] for r in (roots[1] / "runs/round_1/live/plots/metrics/train" / name).read_text().splitlines()]
        assert a_rows == b_rows, name  # the same steps and values (timestamps differ)


def test_non_finite_losses_stop_the_run_and_keep_the_last_good_state(project, tmp_path, monkeypatch):
    import seppo.training.trainer as tr

    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 10, "max_bad_steps": 3})
    run_select(cfg, 1, Layout(root))
    run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    real = tr.compute_loss
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        loss, stats = real(*a, **kw)
        return (loss * float("nan"), stats) if calls["n"] > 2 else (loss, stats)

    monkeypatch.setattr(tr, "compute_loss", flaky)
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite losses.*max_bad_steps=3"):
        run_train(cfg, 1, Layout(root), root / "data/cache")
    meta = json.loads((root / "runs/state/round_1/meta.json").read_text())
    assert meta["update"] == 2  # saved after the two good updates, never overwritten by bad ones
    assert not (root / "models/round_1").exists()
    skipped = (root / "runs/round_1/live/plots/metrics/train/skipped.tsv").read_text().splitlines()[1:]
    assert [float(s.split("\t")[1]) for s in skipped] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_fused_forward_equals_separate_forwards(tiny_pipeline_dir):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    policy = UNet2DConditionModel.from_pretrained(tiny_pipeline_dir, subfolder="unet")
    ref = UNet2DConditionModel.from_pretrained(tiny_pipeline_dir, subfolder="unet")
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    sched = DDPMScheduler.from_pretrained(tiny_pipeline_dir, subfolder="scheduler")
    g = torch.Generator().manual_seed(0)
    z_w, z_r = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    cond, noise = torch.randn(3, 16, 32, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([10, 500, 990])
    cfg = TrainConfig(beta=500.0, criterion="sign")
    fused, stats = compute_loss(cfg, policy, ref, sched, MicroBatch(z_w, z_r, as_cond(cond), noise, t))
    with torch.no_grad():
        e = {}
        for name, net in (("pol", policy), ("ref", ref)):
            for side, z in (("w", z_w), ("r", z_r)):
                e[f"{name}_{side}"] = per_sample_error(net(sched.add_noise(z, noise, t), t, cond).sample, noise)
    separate, _ = seppo_loss(e["pol_w"], e["ref_w"], e["pol_r"], e["ref_r"], beta=500.0, criterion="sign")
    torch.testing.assert_close(fused.detach(), separate, rtol=1e-4, atol=1e-6)


def test_config_rejects_warmup_longer_than_the_run():
    from seppo.config import ConfigError, parse_params

    with pytest.raises(ConfigError, match="lr_warmup=200 is not shorter than the run"):
        parse_params({"train": {"lr_warmup": 200, "updates_per_round": 40, "rounds": 3}})


def test_lora_round_saves_a_fused_plain_checkpoint(project, tmp_path):
    from diffusers import UNet2DConditionModel

    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2, "lora_rank": 4, "lr": 1e-2})
    run_round(cfg, 1, root)
    unet = UNet2DConditionModel.from_pretrained(root / "models/round_1", subfolder="unet")
    assert not any("lora" in n for n, _ in unet.named_parameters())  # fused: a plain diffusers UNet
    w0, w1 = unet_state(root / "models/base"), unet_state(root / "models/round_1")
    changed = [n for n in w0 if not torch.equal(w0[n], w1[n])]
    assert changed and all(any(k in n for k in ("to_q", "to_k", "to_v", "to_out")) for n in changed)


def test_offloaded_reference_gives_the_same_round(project, tmp_path):
    """The reference streamed from CPU memory through accelerate's offload hooks: same weights out."""
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2})
    a = run_round(cfg, 1, fresh(project, tmp_path / "a"))
    b = run_round(TrainConfig(**{**TINY, "updates_per_round": 2, "offload_reference": True}), 1,
                  fresh(project, tmp_path / "b"))
    assert a["mean_loss"] == b["mean_loss"]
    wa, wb = unet_state(tmp_path / "a/p/models/round_1"), unet_state(tmp_path / "b/p/models/round_1")
    assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_channels_last_gives_the_same_round(project, tmp_path):
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2})
    a = run_round(cfg, 1, fresh(project, tmp_path / "a"))
    b = run_round(TrainConfig(**{**TINY, "updates_per_round": 2, "channels_last": True}), 1,
                  fresh(project, tmp_path / "b"))
    assert b["mean_loss"] == pytest.approx(a["mean_loss"], rel=1e-4)
    w0 = unet_state(project / "models/base")
    wa, wb = unet_state(tmp_path / "a/p/models/round_1"), unet_state(tmp_path / "b/p/models/round_1")
    # other conv kernels, other rounding; Adam's sign-like first steps amplify it on near-zero
    # gradients, so compare whole updates (as the DDP test does)
    da = torch.cat([(wa[n] - w0[n]).flatten() for n in wa])
    db = torch.cat([(wb[n] - w0[n]).flatten() for n in wa])
    assert (da - db).norm() / da.norm() < 0.05
    assert all(wb[n].is_contiguous() for n in wb)  # saved in the standard layout


def test_precomputed_reference_errors_give_the_same_round_without_loading_the_reference(project, tmp_path,
                                                                                       monkeypatch):
    import seppo.training.trainer as trainer_mod

    cfg = TrainConfig(**{**TINY, "updates_per_round": 3})
    a = run_round(cfg, 1, fresh(project, tmp_path / "a"))
    loads = []
    real = trainer_mod._load_unet
    monkeypatch.setattr(trainer_mod, "_load_unet", lambda folder: loads.append(folder) or real(folder))
    pre = TrainConfig(**{**TINY, "updates_per_round": 3, "reference_errors": "precomputed"})
    b = run_round(pre, 1, fresh(project, tmp_path / "b"))
    assert len(loads) == 1  # the policy only: the reference UNet is never loaded for training
    assert b["reference_errors"] == "precomputed"
    assert b["mean_loss"] == pytest.approx(a["mean_loss"], rel=1e-5)
    la = (tmp_path / "a/p/runs/round_1/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    lb = (tmp_path / "b/p/runs/round_1/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    assert [float(x.split("\t")[1]) for x in lb] == pytest.approx([float(x.split("\t")[1]) for x in la], rel=1e-5)
    w0 = unet_state(project / "models/base")
    wa, wb = unet_state(tmp_path / "a/p/models/round_1"), unet_state(tmp_path / "b/p/models/round_1")
    da = torch.cat([(wa[n] - w0[n]).flatten() for n in wa])
    db = torch.cat([(wb[n] - w0[n]).flatten() for n in wa])
    assert (da - db).norm() / da.norm() < 1e-3


def test_precomputed_errors_must_match_the_round(project, tmp_path):
    root = fresh(project, tmp_path)
    cfg = TrainConfig(**TINY)
    lay = Layout(root)
    run_select(cfg, 1, lay)
    run_refsamples(cfg, 1, lay, root / "data/cache")  # in_step: no errors written
    with pytest.raises(FileNotFoundError, match="reference_errors=precomputed needs the refsamples"):
        run_train(TrainConfig(**{**TINY, "reference_errors": "precomputed"}), 1, lay, root / "data/cache")
    with pytest.raises(ValueError, match="needs loss=seppo"):
        TrainConfig(**{**TINY, "loss": "dpo", "reference_errors": "precomputed"})
