"""The video evaluation and report: clips generated once and stored losslessly, per-clip metrics against the real
clips with prompt-bootstrap CIs, paired differences and win rates vs the base, and a self-contained report.

Tiny random AnimateDiff components (CPU, 2 sampling steps, 2 prompts, 4 frames at 32 px); crafted evaluation
folders whose metric values are known (a copy of the real clips, a noisy copy)."""

import base64
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_model

from seppo.config import SamplingConfig, VideoConfig, parse_params
from seppo.evaluation.video_generate import (
    VideoEvalError,
    decode_strip,
    encode_strip,
    load_eval_clips,
    run_video_eval_generate,
)
from seppo.evaluation.video_metrics import PSNR_CAP_DB, psnr, ssim
from seppo.evaluation.video_stage import run_video_evaluate
from seppo.models.pipeline import prompt_seed
from seppo.reports.video_report import GIF_MIN_PX, MIN_FRAME_PX, run_video_report
from seppo.world.video import clip_utility, parse_clip_caption, random_clip, render_clip

FRAMES, SIZE = 4, 32
SAMPLING = SamplingConfig(sampler="ddim", steps=2, guidance=3.0)


def _write_real(folder, rows):
    """The video ingest's folder format: captions.csv + clips/<clip_id>/NNN.png."""
    (folder / "clips").mkdir(parents=True)
    for cid, _, frames in rows:
        d = folder / "clips" / cid
        d.mkdir()
        for k, f in enumerate(frames):
            Image.fromarray(f).save(d / f"{k:03d}.png")
    pd.DataFrame([(cid, cap, f"clips/{cid}") for cid, cap, _ in rows],
                 columns=["clip_id", "caption", "path"]).to_csv(folder / "captions.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two eval captions (one real clip each), a train caption that must not be used, the prompts table."""
    root = tmp_path_factory.mktemp("video-world")
    rng = np.random.default_rng(3)
    scenes = []
    while len(scenes) < 3:
        c = random_clip(rng)
        if c.caption() not in [s.caption() for s in scenes]:
            scenes.append(c)
    real = {s.caption(): render_clip(s, SIZE, FRAMES, rng) for s in scenes[:2]}
    _write_real(root / "real", [(f"eval-{i}", cap, f) for i, (cap, f) in enumerate(real.items())])
    pd.DataFrame({"prompt_id": ["eval-0000", "train-0000", "eval-0001"],
                  "caption": [scenes[0].caption(), scenes[2].caption(), scenes[1].caption()],
                  "split": ["eval", "train", "eval"]}).to_parquet(root / "prompts.parquet", index=False)
    return {"root": root, "real": real, "captions": [scenes[0].caption(), scenes[1].caption()],
            "train_caption": scenes[2].caption()}


def _cfg(world, **kw):
    base = dict(prompts=str(world["root"] / "prompts.parquet"), real=str(world["root"] / "real"), frames=FRAMES,
                eval_prompts=2, eval_seeds=[0, 1], sampling=SAMPLING, batch_size=2, n_boot=200, seed=0,
                preview_prompts=2, fid_weights=None, fvd_weights=None)  # no feature networks unless a test names them
    return VideoConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from seppo.models.video_pipeline import load_video_pipeline

    from .dummy import save_dummy_motion_adapter, save_dummy_pipeline

    t = tmp_path_factory.mktemp("video-ckpt")
    pipe = load_video_pipeline(save_dummy_pipeline(t / "base"), save_dummy_motion_adapter(t / "ad"))
    pipe.save_pretrained(t / "ckpt", safe_serialization=True)
    return t / "ckpt"


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_strips_are_lossless_frames_side_by_side():
    clip = np.random.default_rng(0).integers(0, 256, (FRAMES, 8, 6, 3), dtype=np.uint8)
    png = encode_strip(clip)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (FRAMES * 6, 8)  # W x H: frames side by side
        np.testing.assert_array_equal(np.asarray(im)[:, 6:12], clip[1])
    np.testing.assert_array_equal(decode_strip(png, FRAMES), clip)
    with pytest.raises(ValueError, match="does not split into 5 frames"):
        decode_strip(png, 5)


@pytest.mark.slow
def test_eval_generate_rewrites_the_same_bytes_and_stores_what_generate_clips_returns(world, checkpoint, tmp_path):
    from seppo.models.pipeline import load_pipeline
    from seppo.models.video_pipeline import generate_clips

    cfg = _cfg(world)
    out, timing = tmp_path / "eval" / "base", tmp_path / "timing" / "video_eval_base.json"
    result = run_video_eval_generate(cfg, checkpoint, "base", out, timing)
    first = _files(out)
    assert set(first) == {"clips.parquet", "settings.json"}
    run_video_eval_generate(cfg, checkpoint, "base", out, timing)
    assert _files(out) == first  # a re-run writes identical bytes

    table, clips = load_eval_clips(out)
    caps = world["captions"]
    # every (eval prompt, seed); the train row is never used
    assert table[["prompt_id", "prompt", "seed"]].values.tolist() == [
        ["eval-0000", caps[0], 0], ["eval-0001", caps[1], 0], ["eval-0000", caps[0], 1], ["eval-0001", caps[1], 1]]
    assert table.sample_seed.tolist() == [prompt_seed(p, s) for p, s in zip(table.prompt, table.seed)]
    want = generate_clips(load_pipeline(checkpoint), table.prompt.tolist(), table.seed.tolist(), SAMPLING, FRAMES,
                          batch_size=2)
    assert clips.shape == want.shape == (4, FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(clips, want)
    assert not np.array_equal(clips[0], clips[2])  # the seed changes the clip

    settings = json.loads((out / "settings.json").read_text())
    assert {k: settings[k] for k in ("name", "n_prompts", "seeds", "sampler", "steps", "guidance", "frames")} == {
        "name": "base", "n_prompts": 2, "seeds": [0, 1], "sampler": "ddim", "steps": 2, "guidance": 3.0,
        "frames": FRAMES}
    assert "seconds" not in json.dumps(settings)  # wall-clock figures only in the timing file
    t = json.loads(timing.read_text())
    assert t["clips"] == 4 and t["seconds"] > 0 and t["clips_per_s"] > 0
    assert result["clips"] == 4


def test_prompt_table_errors_name_the_file_and_column(world, checkpoint, tmp_path):
    bad = tmp_path / "prompts_bad.parquet"
    pd.DataFrame({"prompt_id": ["a"], "text": ["one red circle"]}).to_parquet(bad, index=False)
    with pytest.raises(VideoEvalError, match=r"prompts_bad\.parquet: missing column\(s\) \['caption'\]"):
        run_video_eval_generate(_cfg(world, prompts=str(bad)), checkpoint, "base", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- crafted evaluation folders ------------------------------------------------------------------------------

def _write_eval(folder, name, world, clip_of, seeds=(0, 1), drop=None):
    """A video-eval-generate folder whose clip for (prompt i, seed) is clip_of(i, seed, real clip)."""
    rows = [(f"eval-{i:04d}", cap, s) for s in seeds for i, cap in enumerate(world["captions"])]
    if drop is not None:
        rows = [r for r in rows if r[:1] + r[2:] != drop]
    folder.mkdir(parents=True)
    pd.DataFrame({"prompt_id": [r[0] for r in rows], "prompt": [r[1] for r in rows], "seed": [r[2] for r in rows],
                  "sample_seed": [prompt_seed(r[1], r[2]) for r in rows],
                  "png": [encode_strip(clip_of(int(r[0][-1]), r[2], world["real"][r[1]])) for r in rows],
                  }).to_parquet(folder / "clips.parquet", index=False)
    (folder / "settings.json").write_text(json.dumps({
        "checkpoint": f"models/video_{name}", "name": name, "prompts": "prompts.parquet", "n_prompts": 2,
        "seeds": list(seeds), "sampler": "ddim", "steps": 2, "guidance": 3.0, "frames": FRAMES,
        "seed_rule": "sha256(seed, prompt) per clip", "clips": len(rows)}))
    return folder


def _noisy(i, s, real):
    rng = np.random.default_rng(100 * i + s)
    return np.clip(real + rng.normal(0, 40, real.shape), 0, 255).astype(np.uint8)


def _lpips_weights(tmp_path):
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    path = tmp_path / "lpips_alex.safetensors"
    save_model(_LPIPS(pretrained=False, net="alex", pnet_rand=True), str(path))
    return path


def _fvd_weights(tmp_path):
    from torchvision import models

    torch.manual_seed(0)
    net = models.video.r3d_18(weights=None)
    net.fc = torch.nn.Identity()
    for m in net.modules():  # batch-norm statistics from random inputs, so the features have a usable scale
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.rand(4, 3, FRAMES, 112, 112))
    path = tmp_path / "fvd.safetensors"
    save_model(net.eval(), str(path))
    return path


@pytest.fixture(scope="module")
def crafted(world, tmp_path_factory):
    t = tmp_path_factory.mktemp("crafted")
    dirs = [_write_eval(t / "base", "base", world, lambda i, s, r: r.copy()),
            _write_eval(t / "round_1", "round_1", world, _noisy)]
    cfg = _cfg(world, lpips_weights=str(_lpips_weights(t)))
    result = run_video_evaluate(cfg, dirs, t / "eval", t / "metrics" / "video_eval.json")
    return {"t": t, "cfg": cfg, "dirs": dirs, "result": result, "eval": t / "eval"}


def test_a_copy_of_the_real_clips_scores_the_cap_and_a_noisy_copy_loses_with_a_ci_below_zero(world, crafted):
    scores = pd.read_parquet(crafted["eval"] / "scores.parquet")
    assert len(scores) == 8 and set(scores.columns) >= {"checkpoint", "prompt_id", "seed", "utility", "psnr",
                                                        "ssim", "lpips"}
    base = scores[scores.checkpoint == "base"]
    assert (base.psnr == PSNR_CAP_DB).all()
    np.testing.assert_allclose(base.ssim, 1.0, atol=1e-5)  # float32 rounding
    np.testing.assert_allclose(base.lpips, 0.0, atol=1e-6)
    truth = [clip_utility(world["real"][p], p).utility for p in base.prompt]
    np.testing.assert_allclose(base.utility, truth)  # the real clips' utility
    noisy = scores[scores.checkpoint == "round_1"]
    assert (noisy.psnr < 25).all() and (noisy.ssim < 0.9).all() and (noisy.lpips > 0).all()
    # the per-clip values are the metric of that clip against its caption's real clip
    clip = _noisy(0, 1, world["real"][world["captions"][0]])[None]
    row = noisy[(noisy.prompt_id == "eval-0000") & (noisy.seed == 1)].iloc[0]
    ref = world["real"][world["captions"][0]][None]
    assert row.psnr == pytest.approx(psnr(clip, ref)[0]) and row.ssim == pytest.approx(ssim(clip, ref)[0])

    s = pd.read_csv(crafted["eval"] / "summary.csv")
    assert list(s.columns[:4]) == ["checkpoint", "metric", "level", "higher_is_better"]
    assert {"mean", "ci_low", "ci_high", "diff_vs_base", "diff_ci_low", "diff_ci_high", "win_rate_vs_base",
            "win_ci_low", "win_ci_high", "n_prompts", "n_seeds", "scale"} <= set(s.columns)
    r = s.set_index(["checkpoint", "metric"])
    for m in ("psnr", "ssim", "utility"):
        assert bool(r.loc[("round_1", m), "higher_is_better"])
    assert not bool(r.loc[("round_1", "lpips"), "higher_is_better"])
    for m in ("psnr", "ssim"):  # worse than the base on every pair: the difference and its whole CI below 0
        x = r.loc[("round_1", m)]
        assert x.diff_vs_base < 0 and x.diff_ci_high < 0 and x.diff_ci_low <= x.diff_vs_base
        assert x.win_rate_vs_base == 0 and x.win_ci_high == 0
    x = r.loc[("round_1", "lpips")]  # lower is better: a larger distance is a loss
    assert x.diff_vs_base > 0 and x.diff_ci_low > 0 and x.win_rate_vs_base == 0
    assert r.loc[("base", "psnr"), "mean"] == pytest.approx(PSNR_CAP_DB)
    assert r.loc[("round_1", "psnr"), "n_prompts"] == 2 and r.loc[("round_1", "psnr"), "n_seeds"] == 2
    assert pd.isna(r.loc[("base", "psnr"), "diff_vs_base"])
    assert "dB" in r.loc[("base", "psnr"), "scale"] and "[-1, 1]" in r.loc[("base", "ssim"), "scale"]

    m = json.loads((crafted["t"] / "metrics" / "video_eval.json").read_text())
    assert m["metrics"]["round_1"]["psnr"]["diff_ci_high"] < 0
    assert m["metrics"]["base"]["ssim"]["mean"] == pytest.approx(1.0, abs=1e-5)


def test_psnr_is_the_mean_over_the_captions_real_clips(world, tmp_path):
    cap = world["captions"][0]
    other = render_clip(parse_clip_caption(cap), SIZE, FRAMES, np.random.default_rng(9))  # another render
    cap1 = world["captions"][1]
    rows = [("a", cap, world["real"][cap]), ("b", cap, other), ("c", cap1, world["real"][cap1])]
    real = _write_real(tmp_path / "real2", rows)
    d = _write_eval(tmp_path / "base", "base", world, lambda i, s, r: r.copy(), seeds=(0,))
    run_video_evaluate(_cfg(world, real=str(real), eval_seeds=[0]), [d], tmp_path / "eval", tmp_path / "m.json")
    sc = pd.read_parquet(tmp_path / "eval" / "scores.parquet").set_index("prompt_id")
    want = (PSNR_CAP_DB + psnr(world["real"][cap][None], other[None])[0]) / 2
    assert sc.loc["eval-0000", "psnr"] == pytest.approx(want)
    assert sc.loc["eval-0001", "psnr"] == PSNR_CAP_DB


def test_rows_that_differ_from_the_base_and_captions_without_real_clips_are_named(world, crafted, tmp_path):
    short = _write_eval(tmp_path / "sft_round_1", "sft_round_1", world, _noisy, drop=("eval-0001", 1))
    with pytest.raises(VideoEvalError, match=r"sft_round_1: its \(prompt_id, seed\) rows differ from the base "
                                             r"folder .*missing \[\('eval-0001', 1\)\]"):
        run_video_evaluate(_cfg(world), [crafted["dirs"][0], short], tmp_path / "eval", tmp_path / "m.json")
    only_one = _write_real(tmp_path / "real1", [("x", world["captions"][0], world["real"][world["captions"][0]])])
    with pytest.raises(VideoEvalError, match=f"caption {world['captions'][1]!r} has no real clip"):
        run_video_evaluate(_cfg(world, real=str(only_one)), crafted["dirs"], tmp_path / "eval", tmp_path / "m.json")
    assert not (tmp_path / "eval").exists()


def test_prompts_that_are_not_shapeland_captions_get_no_utility_and_the_report_says_so(world, tmp_path):
    caps = ["a cat playing the piano", "waves on a beach at sunset"]
    w = {**world, "captions": caps, "real": {c: world["real"][k] for c, k in zip(caps, world["captions"])}}
    real = _write_real(tmp_path / "real", [(f"r{i}", c, w["real"][c]) for i, c in enumerate(caps)])
    dirs = [_write_eval(tmp_path / "base", "base", w, lambda i, s, r: r.copy()),
            _write_eval(tmp_path / "round_1", "round_1", w, _noisy)]
    cfg = _cfg(world, real=str(real))
    result = run_video_evaluate(cfg, dirs, tmp_path / "eval", tmp_path / "m.json")
    assert "utility" not in pd.read_parquet(tmp_path / "eval" / "scores.parquet").columns
    assert "utility" not in set(pd.read_csv(tmp_path / "eval" / "summary.csv").metric)
    assert "not a Shapeland clip caption" in result["notes"]["utility"]
    params = parse_params({"video": cfg.model_dump(), "video_world": {"frames": FRAMES}})
    run_video_report(params, tmp_path / "eval", dirs, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Utility: not computed" in md and "not a Shapeland clip caption" in md
    assert "FID / FVD: not computed" in md


def test_the_report_has_a_row_per_checkpoint_animated_gifs_in_the_html_and_rewrites_the_same_bytes(world, crafted):
    params = parse_params({"video": crafted["cfg"].model_dump(), "video_world": {"frames": FRAMES},
                           "train": {"seed": 7}})
    out = crafted["t"] / "report"
    result = run_video_report(params, crafted["eval"], crafted["dirs"], out)
    first = _files(out)
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    names = ["base", "round_1"]
    for title in ("### utility", "### PSNR", "### SSIM", "### LPIPS"):
        section = md.split(title, 1)[1].split("\n#", 1)[0]
        rows = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| checkpoint")]
        assert [ln.split(" | ")[0][2:] for ln in rows] == names, (title, rows)
    psnr_rows = md.split("### PSNR", 1)[1].split("\n#", 1)[0]
    assert "| base | 100.00 [100.00, 100.00] | (base) | (base) |" in psnr_rows
    assert "| round_1 |" in psnr_rows and "0.000 [0.000, 0.000] |" in psnr_rows  # win rate 0 with its CI
    assert "ONE training run" in md and "train.seed = 7" in md and "prompts and sampling seeds only" in md
    assert "FID / FVD: not computed" in md
    assert "arms ['seppo', 'sft']" in md and "trainable `motion`" in md and "updates_per_round" in md

    gifs = sorted(p for p in (out / "figures").iterdir() if p.suffix == ".gif")
    strips = sorted(p for p in (out / "figures").iterdir() if p.suffix == ".png")
    assert len(gifs) == 2 * 2 and len(strips) == 2  # checkpoints x preview prompts; one strip per prompt
    for g in gifs:
        with Image.open(g) as im:
            assert im.is_animated and im.n_frames == FRAMES and im.size[0] >= GIF_MIN_PX >= 192
        assert f"data:image/gif;base64,{base64.b64encode(g.read_bytes()).decode()}" in html
    for s in strips:
        with Image.open(s) as im:
            assert im.size[0] >= FRAMES * MIN_FRAME_PX and im.size[1] >= 2 * MIN_FRAME_PX  # two rows of >= 96 px
        assert f"data:image/png;base64,{base64.b64encode(s.read_bytes()).decode()}" in html
    assert 'src="figures/' not in html and "<table>" in html
    assert result["figures"] == sorted(p.name for p in gifs + strips)

    run_video_report(params, crafted["eval"], crafted["dirs"], out)
    assert _files(out) == first  # a re-run writes identical bytes


def test_the_strip_shows_each_checkpoints_frames_upscaled_pixel_for_pixel(world, crafted):
    """The base row of the first strip holds the real clip's frames, each pixel repeated k x k."""
    from seppo.reports.video_report import GAP_PX, LABEL_PX

    params = parse_params({"video": crafted["cfg"].model_dump(), "video_world": {"frames": FRAMES}})
    out = crafted["t"] / "report_px"
    run_video_report(params, crafted["eval"], crafted["dirs"], out)
    img = np.asarray(Image.open(out / "figures" / "strip_eval-0000.png").convert("RGB"))
    k = math.ceil(MIN_FRAME_PX / SIZE)
    real = world["real"][world["captions"][0]]
    up = np.repeat(np.repeat(real[1], k, 0), k, 1)
    x0 = LABEL_PX + (up.shape[1] + GAP_PX)  # frame 1 of the first row
    hits = [y for y in range(img.shape[0] - up.shape[0])
            if np.array_equal(img[y:y + up.shape[0], x0:x0 + up.shape[1]], up)]
    assert hits, "frame 1 of the base row not found pixel for pixel"


@pytest.mark.slow
def test_the_cli_runs_generate_evaluate_report_with_the_default_paths(world, checkpoint, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from seppo.cli import app

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(world, eval_seeds=[0], n_boot=100)
    params = {"video": json.loads(cfg.model_dump_json()), "video_world": {"frames": FRAMES}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    runner = CliRunner()
    for name in ("base", "round_1"):
        res = runner.invoke(app, ["video-eval-generate", "--checkpoint", str(checkpoint), "--name", name])
        assert res.exit_code == 0, res.output
        assert (tmp_path / "data" / "video_eval" / name / "clips.parquet").exists()
        assert (tmp_path / "reports" / "metrics" / "timing" / f"video_eval_{name}.json").exists()
    clips = ["--clips", "data/video_eval/base", "--clips", "data/video_eval/round_1"]
    res = runner.invoke(app, ["video-evaluate", *clips])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "reports" / "metrics" / "video_eval.json").read_text())
    # the same checkpoint under two names: identical clips, so a zero difference and a win rate of one half
    assert m["metrics"]["round_1"]["psnr"]["diff_vs_base"] == 0 and m["metrics"]["round_1"]["ssim"][
        "win_rate_vs_base"] == 0.5
    res = runner.invoke(app, ["video-report", *clips])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "reports" / "video" / "report.html").exists()
    assert (tmp_path / "reports" / "video" / "eval" / "summary.csv").exists()  # the report left eval/ alone
    res = runner.invoke(app, ["video-evaluate", "--clips", "data/video_eval/base", "--clips", "nope"])
    assert res.exit_code == 2 and "nope: no clips.parquet" in res.output


@pytest.mark.slow
def test_fvd_is_a_set_level_value_per_checkpoint_without_ci_and_the_report_tabulates_it(world, crafted):
    t = crafted["t"] / "with_fvd"
    t.mkdir()
    cfg = _cfg(world, fvd_weights=str(_fvd_weights(t)))
    m = run_video_evaluate(cfg, crafted["dirs"], t / "eval", t / "video_eval.json")
    s = pd.read_csv(t / "eval" / "summary.csv").set_index(["checkpoint", "metric"])
    fvd = s.xs("fvd", level="metric")
    assert (fvd.level == "set").all() and fvd.ci_low.isna().all() and fvd.win_rate_vs_base.isna().all()
    assert fvd.loc["round_1", "mean"] > fvd.loc["base", "mean"] >= 0  # the noisy copy is further from the real set
    assert set(m["metrics"]["base"]["fvd"]) == {"value"} and "no CI" in m["notes"]["fvd"]
    assert m["settings"]["fvd_network"] == "r3d_18"
    params = parse_params({"video": cfg.model_dump(), "video_world": {"frames": FRAMES}})
    run_video_report(params, t / "eval", crafted["dirs"], t / "report")
    md = (t / "report" / "report.md").read_text()
    table = md.split("### FID / FVD", 1)[1].split("\n#", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| checkpoint")]
    assert [ln.split(" | ")[0][2:] for ln in rows] == ["base", "round_1"]
    assert f"| round_1 | {fvd.loc['round_1', 'mean']:.3f} |" in table
