"""Two CPU processes (DDP over gloo) equal one process with the same effective batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seppo.config import TrainConfig
from seppo.layout import Layout
from seppo.training.reference_samples import run_refsamples
from seppo.training.selection import run_select
from tests.test_trainer import TINY, fresh, project, unet_state  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def prepare(project, tmp_path, name, **over):
    cfg = TrainConfig(**{**TINY, "updates_per_round": 3, **over})
    root = fresh(project, tmp_path / name)
    (root / "params.yaml").write_text(yaml.safe_dump({"train": cfg.model_dump()}))
    run_select(cfg, 1, Layout(root))
    run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    return root


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_effective_batch(project, tmp_path):
    one = prepare(project, tmp_path, "one", micro_batch=4, processes=1)
    two = prepare(project, tmp_path, "two", micro_batch=2, processes=2)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "seppo.cli", "train", "-k", "1", "--root", str(one),
                    "--params", str(one / "params.yaml")], check=True, env=env, capture_output=True)
    # accelerate's own CPU multi-process launcher needs mpirun; torchrun + gloo is the same DDP path
    out = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "seppo.cli", "train", "-k", "1", "--root", str(two), "--params", str(two / "params.yaml")],
        env=dict(env, ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "effective batch = 2 processes x 2 x 1 accumulation = 4" in out.stdout
    base = unet_state(one / "models/base")
    a, b = unet_state(one / "models/round_1"), unet_state(two / "models/round_1")
    # Same data, noise and timesteps; only the reduction order differs (DDP all-reduce), which
    # Adam's early sign-like steps can amplify on near-zero gradients: compare whole updates.
    da = torch.cat([(a[n] - base[n]).flatten() for n in a])
    db = torch.cat([(b[n] - base[n]).flatten() for n in a])
    assert da.norm() > 0 and (da - db).norm() / da.norm() < 0.05
    assert torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.999
    rows2 = (two / "runs/round_1/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    rows1 = (one / "runs/round_1/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows2] == [0, 1, 2]  # logged once, by the main process
    l1 = [float(r.split("\t")[1]) for r in rows1]
    l2 = [float(r.split("\t")[1]) for r in rows2]
    assert l2 == __import__("pytest").approx(l1, rel=1e-3)  # the same loss over the effective batch


def test_process_count_must_match_params(project, tmp_path):
    import pytest

    from seppo.training.trainer import run_train

    root = prepare(project, tmp_path, "p", processes=2)
    with pytest.raises(ValueError, match="launched with 1 processes but train.processes=2"):
        run_train(TrainConfig(**{**TINY, "updates_per_round": 3, "processes": 2}), 1, Layout(root),
                  root / "data/cache")


def _torchrun(args, port):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    out = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port",
                          str(port), "-m", "seppo.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_reference_samples_split_across_two_processes_equal_one(project, tmp_path):
    from safetensors.torch import load_file

    one = prepare(project, tmp_path, "one", micro_batch=4)
    two = fresh(project, tmp_path / "two")
    cfg = TrainConfig(**{**TINY, "updates_per_round": 3, "micro_batch": 4})
    (two / "params.yaml").write_text(yaml.safe_dump({"train": cfg.model_dump()}))
    run_select(cfg, 1, Layout(two))
    _torchrun(["refsamples", "-k", "1", "--root", str(two), "--params", str(two / "params.yaml")], 29541)
    a = load_file(str(one / "data/refsamples/round_1/latents.safetensors"))["latents"]
    b = load_file(str(two / "data/refsamples/round_1/latents.safetensors"))["latents"]
    assert a.shape == b.shape and a.shape[0] == 12
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # per-sample seeds: the split does not matter
    assert not list((two / "data/refsamples").glob("*.tmp*"))  # only the main process wrote
    # the work was split (on CPUs accelerate needs cpu=True to see the processes; without it each did it all)
    assert json.loads(Layout(two).refsamples_timing(1).read_text())["processes"] == 2


@pytest.mark.slow
def test_evaluation_images_split_across_two_processes_equal_one(tiny_pipeline_dir, tmp_path):
    import numpy as np
    import pandas as pd

    from seppo.config import EvaluateConfig
    from seppo.evaluation.generate import decode_png, run_eval_generate

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a red circle {i}" for i in range(5)) + "\n")
    ev = {"prompts": str(prompts), "seeds": [0, 1], "sampling": {"sampler": "ddim", "steps": 3, "guidance": 3.0},
          "batch_size": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": ev}))
    run_eval_generate(EvaluateConfig(**ev), tiny_pipeline_dir, "one", tmp_path / "one")
    _torchrun(["eval-generate", "--checkpoint", str(tiny_pipeline_dir), "--name", "two", "--out",
               str(tmp_path / "two"), "--timing", str(tmp_path / "two.json"), "--params", str(tmp_path / "params.yaml")],
              29542)
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2  # split, not done twice
    a = pd.read_parquet(tmp_path / "one/images.parquet")
    b = pd.read_parquet(tmp_path / "two/images.parquet")
    assert len(a) == len(b) == 10
    assert a[["prompt", "seed", "sample_seed"]].equals(b[["prompt", "seed", "sample_seed"]])
    ia = np.stack([decode_png(x) for x in a.png]).astype(int)
    ib = np.stack([decode_png(x) for x in b.png]).astype(int)
    assert np.abs(ia - ib).max() <= 1  # rounding to uint8 may flip one level, nothing more


@pytest.mark.slow
def test_evaluation_clips_split_across_two_processes_equal_one(tmp_path):
    """The video evaluation's clips: each has its own seed, so two processes write what one writes."""
    import numpy as np
    import pandas as pd

    from seppo.config import VideoConfig
    from seppo.evaluation.video_generate import decode_strip, run_video_eval_generate
    from seppo.models.video_pipeline import load_video_pipeline

    from .dummy import save_dummy_motion_adapter, save_dummy_pipeline

    ckpt = tmp_path / "ckpt"
    load_video_pipeline(save_dummy_pipeline(tmp_path / "base"), save_dummy_motion_adapter(tmp_path / "ad")) \
        .save_pretrained(ckpt, safe_serialization=True)
    pd.DataFrame({"prompt_id": [f"eval-{i:04d}" for i in range(3)],
                  "caption": [f"a red circle {i}" for i in range(3)], "split": ["eval"] * 3}) \
        .to_parquet(tmp_path / "prompts.parquet", index=False)
    video = {"prompts": str(tmp_path / "prompts.parquet"), "frames": 4, "eval_prompts": 3, "eval_seeds": [0, 1],
             "sampling": {"sampler": "ddim", "steps": 2, "guidance": 3.0}, "batch_size": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"video": video, "video_world": {"frames": 4}}))
    run_video_eval_generate(VideoConfig(**video), ckpt, "one", tmp_path / "one")
    _torchrun(["video-eval-generate", "--checkpoint", str(ckpt), "--name", "two", "--out", str(tmp_path / "two"),
               "--timing", str(tmp_path / "two.json"), "--params", str(tmp_path / "params.yaml")], 29543)
    a = pd.read_parquet(tmp_path / "one/clips.parquet")
    b = pd.read_parquet(tmp_path / "two/clips.parquet")
    assert len(a) == len(b) == 6
    assert a[["prompt_id", "seed", "sample_seed"]].equals(b[["prompt_id", "seed", "sample_seed"]])
    ca = np.stack([decode_strip(x, 4) for x in a.png]).astype(int)
    cb = np.stack([decode_strip(x, 4) for x in b.png]).astype(int)
    assert ca.std() > 0 and np.abs(ca - cb).max() <= 1  # rounding to uint8 may flip one level, nothing more
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2  # split, not done twice
    assert not list(tmp_path.glob("*.tmp*"))  # only the main process wrote
