"""Evidence I: the robust anchors on crafted cases, the oracle diagnostics, and the confounds that were
removed (reference dtype, checkpoint identity, prediction type, noise offset)."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from seppo.config import ConfigError, TrainConfig, parse_params
from seppo.models.conditioning import as_cond
from seppo.training import oracle
from seppo.training.forward import MicroBatch, compute_loss, training_target
from seppo.training.losses import (AnchorConfig, AnchorEvidence, anchor_decision, anchor_from_draws, seppo_loss)
from seppo.layout import Layout
from seppo.training.plan import draw_noise, noise_seed, resolve_noise_offset, round_noise
from seppo.training.reference_samples import run_refsamples
from seppo.training.selection import run_select
from seppo.training.trainer import run_train
from tests.test_trainer import TINY, fresh, make_project, project  # noqa: F401  (fixture)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


# ---- anchors on crafted cases -------------------------------------------------------------------

def test_draw_average_and_standard_error_by_hand():
    ev = anchor_from_draws(t(1.0, 2.0, 3.0, 6.0)[None])
    assert ev.mean.item() == pytest.approx(3.0)
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    assert ev.se.item() == pytest.approx(sd / 2.0)
    with pytest.raises(ValueError, match="K >= 2"):
        anchor_from_draws(t(1.0, 2.0))


def test_margin_decides_only_beyond_z_standard_errors_else_the_fallback():
    # gaps: clearly positive, clearly negative, within the noise (|0.01| <= 2 * 0.01)
    ev = AnchorEvidence(t(0.05, -0.05, 0.01), t(0.01, 0.01, 0.01))
    loser = anchor_decision(ev, AnchorConfig("sign", margin_z=2.0, fallback="loser"))
    drop = anchor_decision(ev, AnchorConfig("sign", margin_z=2.0, fallback="drop"))
    assert loser.tolist() == [1.0, -1.0, 1.0]
    assert drop.tolist() == [1.0, -1.0, 0.0]
    # a negative gap inside the margin is NOT flipped (the paper's single draw would flip it)
    ev2 = AnchorEvidence(t(-0.01), t(0.01))
    assert anchor_decision(ev2, AnchorConfig("sign")).item() == -1.0
    assert anchor_decision(ev2, AnchorConfig("sign", margin_z=2.0)).item() == 1.0
    ind = anchor_decision(ev, AnchorConfig("indicator", margin_z=2.0, fallback="drop"))
    assert ind.tolist() == [1.0, 0.0, 0.0]


def test_soft_anchor_is_tanh_of_gap_in_standard_errors():
    ev = AnchorEvidence(t(0.02, -0.01, 0.0, 0.0), t(0.01, 0.02, 0.01, 0.0))
    s = anchor_decision(ev, AnchorConfig("soft", soft_c=2.0))
    assert s.tolist() == pytest.approx([math.tanh(1.0), math.tanh(-0.25), 0.0, 0.0])
    # in the loss, a fractional s scales the reference term
    e_pol_w, e_ref_w, e_pol_r, e_ref_r = t(0.10), t(0.12), t(0.30), t(0.20)
    loss, stats = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=100.0, anchor=AnchorConfig("soft", soft_c=2.0),
                             evidence=AnchorEvidence(t(0.02), t(0.01)))
    expected = math.log1p(math.exp(50.0 * ((0.10 - 0.12) - math.tanh(1.0) * (0.30 - 0.20))))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats.per_sample["s"].item() == pytest.approx(math.tanh(1.0))
    with pytest.raises(ValueError, match="anchor_draws >= 2"):
        anchor_decision(AnchorEvidence(t(0.1)), AnchorConfig("soft"))


def test_anchor_evidence_overrides_the_loss_draw():
    # the loss's own draw says "reference better" (flip), the K-draw evidence says "policy better"
    e_pol_w, e_ref_w = t(0.20), t(0.15)
    _, single = seppo_loss(e_pol_w, e_ref_w, t(0.3), t(0.3), beta=10.0, criterion="sign")
    _, averaged = seppo_loss(e_pol_w, e_ref_w, t(0.3), t(0.3), beta=10.0, criterion="sign",
                             evidence=anchor_from_draws(t(0.02, 0.03, 0.04)[None]))
    assert single.flip_rate == 1.0 and averaged.flip_rate == 0.0
    assert averaged.per_sample["gap"].item() == pytest.approx(-0.05)  # the loss draw is still recorded


@pytest.mark.parametrize("bad, match", [
    ({"criterion": "soft"}, "criterion=soft needs a standard error"),
    ({"anchor_margin_z": 2.0}, "anchor_margin_z=2.0 needs a standard error"),
    ({"anchor_draws": 1}, "anchor_draws=1 has no standard error"),
])
def test_anchor_params_that_cannot_work_fail_at_load(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_params({"train": bad})


# ---- the confounds ------------------------------------------------------------------------------

def test_v_prediction_target_is_the_velocity_and_other_types_are_refused(tiny_pipeline_dir):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    sched = DDPMScheduler.from_pretrained(tiny_pipeline_dir, subfolder="scheduler", prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    z, noise, tt = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700])
    a = sched.alphas_cumprod[tt].sqrt().view(-1, 1, 1, 1)
    s = (1 - sched.alphas_cumprod[tt]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(training_target(sched, z, noise, tt), a * noise - s * z)
    # the loss regresses that target: e_pol^w by hand with the velocity
    unet = UNet2DConditionModel.from_pretrained(tiny_pipeline_dir, subfolder="unet")
    cond = torch.randn(2, 16, 32, generator=g)
    with torch.no_grad():
        pred = unet(sched.add_noise(z, noise, tt), tt, cond).sample
    loss, _ = compute_loss(TrainConfig(loss="sft"), unet, None, sched,
                           MicroBatch(z, None, as_cond(cond), noise, tt))
    assert loss.item() == pytest.approx(((pred - (a * noise - s * z)) ** 2).mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(((pred - noise) ** 2).mean().item(), rel=1e-3)
    sample = DDPMScheduler.from_pretrained(tiny_pipeline_dir, subfolder="scheduler", prediction_type="sample")
    with pytest.raises(ValueError, match="prediction_type 'sample' is not supported.*epsilon and v_prediction"):
        training_target(sample, z, noise, tt)


def test_a_v_prediction_base_model_is_refused_by_name_only_for_unsupported_types(project, tmp_path):  # noqa: F811
    root = fresh(project, tmp_path)
    base = root / "models/base"
    base.unlink()
    shutil.copytree(project / "models/base", base)
    cfg_path = base / "scheduler/scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "prediction_type": "sample"}))
    tr = TrainConfig(**{**TINY, "updates_per_round": 1})
    run_select(tr, 1, Layout(root))
    run_refsamples(tr, 1, Layout(root), root / "data/cache")
    with pytest.raises(ValueError, match=r"models/base/scheduler: scheduler prediction_type 'sample'"):
        run_train(tr, 1, Layout(root), root / "data/cache")


def test_identical_weights_give_s_zero_under_mixed_precision(project, tmp_path):  # noqa: F811
    # round 1: the reference IS the policy (theta_0). Under bf16 autocast the reference must run the
    # same arithmetic as the policy (fp32 weights, same autocast): every s is 0, not precision noise.
    from accelerate.state import AcceleratorState

    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1, "mixed_precision": "bf16"})
    run_select(cfg, 1, Layout(root))
    run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    AcceleratorState._reset_state(True)  # the in-process singleton was set up without mixed precision
    try:
        summary = run_train(cfg, 1, Layout(root), root / "data/cache")
    finally:
        AcceleratorState._reset_state(True)
    assert summary["share_s_dropped"] == 1.0 and summary["anchor_flip_rate"] == 0.0
    tie = (root / "runs/round_1/live/plots/metrics/train/tie_rate.tsv").read_text().splitlines()
    assert float(tie[1].split("\t")[1]) == 1.0


@pytest.mark.parametrize("mode", ["in_step", "precomputed"])
def test_reference_runs_in_the_policys_dtype_and_autocast(project, tmp_path, mode):  # noqa: F811
    """On CUDA a half-precision reference next to an fp32 policy under autocast gives errors ~4e-4 apart
    for identical weights; on CPU bf16 the two happen to agree, so check the contract itself (fp32
    reference weights), and the precomputed path end to end: its errors must be made under training's
    autocast, or round 1's first update (policy == reference) is not a tie."""
    from accelerate.state import AcceleratorState

    from seppo.training.trainer import _Run

    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1, "mixed_precision": "bf16", "reference_errors": mode})
    run_select(cfg, 1, Layout(root))
    run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    AcceleratorState._reset_state(True)
    try:
        if mode == "in_step":
            run = _Run(cfg, 1, Layout(root), root / "data/cache")
            assert run.acc.mixed_precision == "bf16"
            assert next(run.reference.parameters()).dtype == torch.float32
            assert next(run.policy.parameters()).dtype == torch.float32
        else:
            summary = run_train(cfg, 1, Layout(root), root / "data/cache")
            assert summary["share_s_dropped"] == 1.0
    finally:
        AcceleratorState._reset_state(True)


def test_train_refuses_reference_samples_of_another_checkpoint(project, tmp_path):  # noqa: F811
    root = fresh(project, tmp_path)
    lay = Layout(root)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1})
    run_select(cfg, 1, lay)
    run_refsamples(cfg, 1, lay, root / "data/cache")
    sel = json.loads(lay.selection(1).read_text())
    other = root / "models/other"
    shutil.copytree(project / "models/base", other)
    lay.selection(1).write_text(json.dumps({**sel, "reference": str(other)}))
    with pytest.raises(RuntimeError, match=f"generated by {root}/models/base, but .*reference.json selects {other}"):
        run_train(cfg, 1, lay, root / "data/cache")
    # the same path with other weights (e.g. theta_j re-trained since) is refused too
    lay.selection(1).write_text(json.dumps(sel))
    base = root / "models/base"
    base.unlink()
    shutil.copytree(project / "models/base", base)
    w = base / "unet/diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(str(w))
    first = sorted(state)[0]
    state[first] = state[first] + 1.0
    save_file(state, str(w))
    with pytest.raises(RuntimeError, match="generated by other weights than those now in"):
        run_train(cfg, 1, lay, root / "data/cache")


def test_noise_offset_auto_follows_the_base_recipe(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    assert resolve_noise_offset(TrainConfig(), base) == 0.0  # no record: a real checkpoint
    (base / "seppo_provenance.json").write_text(json.dumps({"params": {"source": "embedded", "noise_offset": 0.3}}))
    assert resolve_noise_offset(TrainConfig(), base) == 0.3
    (base / "seppo_provenance.json").write_text(json.dumps({"params": {"source": "org/sd15", "noise_offset": 0.3}}))
    assert resolve_noise_offset(TrainConfig(), base) == 0.0  # copied real model: its params are not its recipe
    assert resolve_noise_offset(TrainConfig(noise_offset=0.1), base) == 0.1


def test_offset_noise_adds_a_per_channel_constant_and_zero_keeps_the_plain_draw():
    plain, t0 = round_noise(0, 1, 3, 0, 4, (4, 8, 8), 1000)
    g = torch.Generator().manual_seed(noise_seed(0, 1, 3, 0))
    torch.testing.assert_close(plain, torch.randn((4, 4, 8, 8), generator=g))  # historical draw unchanged
    off, t1 = round_noise(0, 1, 3, 0, 4, (4, 8, 8), 1000, noise_offset=0.3)
    assert torch.equal(t0, t1)
    diff = off - plain
    assert torch.allclose(diff, diff[..., :1, :1].expand_as(diff))  # constant over pixels
    assert 0.05 < diff[..., 0, 0].std().item() < 1.0
    g2 = torch.Generator().manual_seed(1)
    n, _ = draw_noise(g2, 2, (4, 8, 8), 1000, 0.0)
    assert n.shape == (2, 4, 8, 8)


# ---- the oracle ---------------------------------------------------------------------------------

def test_auc_by_hand_with_ties():
    assert oracle.auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert oracle.auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 0.0
    # one positive vs two negatives, tied with one of them: (0.5 + 1) / 2
    assert oracle.auc(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == 0.75
    assert oracle.auc(np.array([0.5, 0.4]), np.array([1, 1])) is None


def test_round_diagnostics_on_crafted_records():
    records = {"s": np.array([1.0, -1.0, 1.0, 0.0]), "gap": np.array([0.2, -0.1, 0.05, -0.3]),
               "anchor_gap": np.array([0.2, -0.1, 0.25, -0.3]), "anchor_se": np.full(4, np.nan),
               "d_w": np.array([-1.0, 2.0, -3.0, 4.0]), "d_r": np.array([1.0, 1.0, 3.0, 5.0])}
    truth = pd.DataFrame({"position": range(4), "u_winner": [0.8, 0.5, 0.6, 0.3],
                          "u_reference": [0.4, 0.7, 0.7, 0.6], "oracle_flip": [False, True, True, True]})
    d = oracle.round_diagnostics(records, truth)
    assert d["oracle_flip_rate"] == 0.75 and d["anchor_flip_rate"] == 0.25
    assert d["anchor_accuracy"] == 0.75  # position 2: gap > 0 but the reference sample is better
    assert d["decision_accuracy"] == pytest.approx(2 / 3)  # among s != 0
    # scores -anchor_gap: the negative -0.2 vs the positives 0.1, -0.25, 0.3: 2 of 3 rank above it
    assert d["anchor_auc"] == pytest.approx(2 / 3)
    assert d["loss_draw_auc"] == 1.0  # the loss draw's gaps (0.05 for position 2) rank all three above
    assert d["d_w_s_loser"] == -2.0 and d["d_r_s_loser"] == 2.0 and d["d_w_s_winner"] == 2.0
    assert d["share_s_dropped"] == 0.25 and d["oracle_agreement_of_none"] == 0.25


@pytest.fixture(scope="module")
def shapeland_project(tmp_path_factory, tiny_pipeline_dir):
    """theta_0 (tiny random) and a cache of 8 winners whose captions are Shapeland's."""
    caps = ["one small red circle on a white background", "two large blue squares on a black background"]
    return make_project(tmp_path_factory.mktemp("shape"), tiny_pipeline_dir, [caps[i % 2] for i in range(8)])


def test_oracle_scores_shapeland_rounds_and_training_reports_it(shapeland_project, tmp_path):
    root = fresh(shapeland_project, tmp_path)
    lay = Layout(root)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2, "anchor_draws": 3})
    run_select(cfg, 1, lay)
    settings = run_refsamples(cfg, 1, lay, root / "data/cache")
    scores = oracle.load(lay.refsamples(1))
    assert len(scores) == 4 and set(scores.columns) >= {"u_winner", "u_reference", "oracle_flip"}
    assert settings["oracle"]["flip_rate"] == pytest.approx(scores["oracle_flip"].mean())
    assert ((scores["u_reference"] > scores["u_winner"]) == scores["oracle_flip"]).all()
    summary = run_train(cfg, 1, lay, root / "data/cache")
    for key in ("oracle_flip_rate", "anchor_accuracy", "anchor_auc", "anchor_flip_rate", "d_w_s_loser"):
        assert key in summary
    assert summary["oracle_flip_rate"] == pytest.approx(scores["oracle_flip"].mean())
    logged = json.loads((root / "runs/round_1/live/metrics.json").read_text())["train"]
    assert {"oracle_flip_rate", "anchor_accuracy"} <= set(logged)
    # off: no oracle file, no oracle keys
    root2 = fresh(shapeland_project, tmp_path / "off")
    off = TrainConfig(**{**TINY, "updates_per_round": 2, "oracle": "off"})
    run_select(off, 1, Layout(root2))
    run_refsamples(off, 1, Layout(root2), root2 / "data/cache")
    assert oracle.load(Layout(root2).refsamples(1)) is None
    assert "oracle_flip_rate" not in run_train(off, 1, Layout(root2), root2 / "data/cache")


def test_no_oracle_for_captions_that_are_not_shapelands(project, tmp_path):  # noqa: F811
    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1})
    run_select(cfg, 1, Layout(root))
    settings = run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    assert "oracle" not in settings and oracle.load(Layout(root).refsamples(1)) is None


def test_multi_draw_anchor_precomputed_equals_in_step(shapeland_project, tmp_path):
    base = dict(TINY, updates_per_round=2, anchor_draws=4, anchor_margin_z=1.0, criterion="sign")
    a = fresh(shapeland_project, tmp_path / "a")
    b = fresh(shapeland_project, tmp_path / "b")
    sa = None
    for root, mode in ((a, "in_step"), (b, "precomputed")):
        cfg = TrainConfig(**{**base, "reference_errors": mode})
        run_select(cfg, 1, Layout(root))
        run_refsamples(cfg, 1, Layout(root), root / "data/cache")
        s = run_train(cfg, 1, Layout(root), root / "data/cache")
        sa = sa or s
    assert s["mean_loss"] == pytest.approx(sa["mean_loss"], rel=1e-5)
    assert s["anchor_flip_rate"] == sa["anchor_flip_rate"]
    with pytest.raises(RuntimeError, match="no reference errors for train.anchor_draws=6"):
        run_train(TrainConfig(**{**base, "anchor_draws": 6, "reference_errors": "precomputed"}), 1, Layout(b),
                  b / "data/cache")
