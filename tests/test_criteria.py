"""Evidence III: the criteria that read the reference sample (oracle, oracle_drop, reward, implicit) on crafted
cases and through the real stages, the per-position records, the loss-calibration diagnostics and the probe."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from seppo.config import TrainConfig
from seppo.training import oracle
from seppo.training.losses import AnchorConfig, AnchorEvidence, seppo_loss
from seppo.layout import Layout
from seppo.training.reference_samples import REWARD_FILE, run_refsamples
from seppo.training.selection import run_select
from seppo.training.trainer import loss_calibration, run_train
from tests.test_anchor import shapeland_project  # noqa: F401 - fixture
from tests.test_evaluation import tiny_clip  # noqa: F401 - fixture
from tests.test_trainer import TINY, fresh


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def softplus(x):
    return math.log1p(math.exp(x))


# errors of two positions: position 0's reference sample is the better image, position 1 is its mirror
E = dict(e_pol_w=t(0.20, 0.20), e_ref_w=t(0.25, 0.25), e_pol_r=t(0.30, 0.30), e_ref_r=t(0.33, 0.33))


@pytest.mark.parametrize("criterion, flipped", [("oracle", -1.0), ("oracle_drop", 0.0), ("reward", -1.0)])
def test_scored_criteria_flip_the_better_reference_sample_and_not_its_mirror(criterion, flipped):
    # score(winner) - score(reference sample): position 0's reference sample is better by 0.1, position 1 worse
    evidence = AnchorEvidence(t(-0.1, 0.1))
    loss, stats = seppo_loss(*E.values(), beta=100.0, anchor=AnchorConfig(criterion), evidence=evidence)
    assert stats.per_sample["s"].tolist() == [flipped, 1.0]
    d_w, d_r = 0.20 - 0.25, 0.30 - 0.33
    by_hand = [softplus(0.5 * 100.0 * (d_w - flipped * d_r)), softplus(0.5 * 100.0 * (d_w - d_r))]
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-12)
    # a margin larger than the reference sample's advantage keeps it a loser
    _, stats = seppo_loss(*E.values(), beta=100.0, anchor=AnchorConfig(criterion, flip_margin=0.2), evidence=evidence)
    assert stats.per_sample["s"].tolist() == [1.0, 1.0]


def test_scored_criteria_refuse_to_run_without_scores():
    with pytest.raises(ValueError, match="per-position scores"):
        seppo_loss(*E.values(), beta=100.0, anchor=AnchorConfig("oracle"))


def test_implicit_flips_where_the_policy_rewards_the_reference_sample_more():
    # position 0: D_w = +0.05 (policy worse on the winner), D_r = -0.05 (better on the reference sample):
    # r(x_r) = 0.05 > r(x_w) = -0.05 -> flip. Position 1 is the mirror: keep as loser
    e_pol_w, e_ref_w, e_pol_r, e_ref_r = t(0.30, 0.20), t(0.25, 0.25), t(0.20, 0.30), t(0.25, 0.25)
    loss, stats = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=10.0, anchor=AnchorConfig("implicit"))
    assert stats.per_sample["s"].tolist() == [-1.0, 1.0]
    assert stats.per_sample["anchor_gap"].tolist() == pytest.approx([-0.1, 0.1])
    by_hand = [softplus(0.5 * 10.0 * (0.05 + (-0.05))), softplus(0.5 * 10.0 * (-0.05 - 0.05))]
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-12)
    # identical nets (round 1): every position undecided -> the fallback (loser, or dropped)
    same = t(0.2, 0.3)
    _, stats = seppo_loss(same, same, same, same, beta=10.0, anchor=AnchorConfig("implicit"))
    assert stats.per_sample["s"].tolist() == [1.0, 1.0]
    _, stats = seppo_loss(same, same, same, same, beta=10.0, anchor=AnchorConfig("implicit", fallback="drop"))
    assert stats.per_sample["s"].tolist() == [0.0, 0.0]
    # with K draws: a margin in standard errors; a gap inside 2 SE falls back
    ev = AnchorEvidence(t(-0.1, -0.1), t(0.01, 0.1))
    _, stats = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=10.0,
                          anchor=AnchorConfig("implicit", margin_z=2.0), evidence=ev)
    assert stats.per_sample["s"].tolist() == [-1.0, 1.0]


def test_config_checks_what_each_criterion_needs():
    with pytest.raises(ValueError, match="needs train.oracle=auto"):
        TrainConfig(criterion="oracle", oracle="off")
    with pytest.raises(ValueError, match="is not a scorer"):
        TrainConfig(criterion="reward", reward_scorer="pickscore")
    with pytest.raises(ValueError, match="reference_errors=in_step"):
        TrainConfig(criterion="implicit", anchor_draws=4, reference_errors="precomputed")
    with pytest.raises(ValueError, match="needs a standard error"):
        TrainConfig(criterion="implicit", anchor_margin_z=2.0)


def _round(cfg, root, models=None, utilities=None):
    lay = Layout(root)
    run_select(cfg, 1, lay)
    run_refsamples(cfg, 1, lay, root / "data/cache", models)
    if utilities is not None:  # a crafted truth: (u_winner, u_reference) per position
        u = np.asarray(utilities, dtype=np.float64)
        pd.DataFrame({"position": np.arange(len(u)), "u_winner": u[:, 0], "u_reference": u[:, 1],
                      "oracle_flip": u[:, 1] > u[:, 0]}).to_parquet(lay.refsamples(1) / oracle.ORACLE_FILE)
    return run_train(cfg, 1, lay, root / "data/cache"), pd.read_parquet(lay.positions(1))


@pytest.mark.parametrize("criterion", ["oracle", "oracle_drop"])
def test_oracle_round_flips_exactly_the_reference_samples_that_beat_their_winner(shapeland_project, tmp_path,
                                                                                 criterion):  # noqa: F811
    root = fresh(shapeland_project, tmp_path)
    # positions 0 and 3: the reference sample has the higher utility; 1 and 2 are their mirror images
    crafted = [(0.4, 0.7), (0.7, 0.4), (0.6, 0.5), (0.5, 0.6)]
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2, "criterion": criterion})
    summary, pos = _round(cfg, root, utilities=crafted)
    truth = pos["u_reference"] > pos["u_winner"]
    assert list(truth) == [True, False, False, True]
    assert (pos.loc[truth, "s"] == (-1.0 if criterion == "oracle" else 0.0)).all()
    assert (pos.loc[~truth, "s"] == 1.0).all()
    # oracle_drop makes no flip decision: s in {+1, 0}, and its decided positions (s = +1) are all right
    assert summary["decision_accuracy"] == 1.0 and summary["oracle_flip_rate"] == 0.5
    assert summary["anchor_auc"] == 1.0  # its statistic is the truth itself
    # the per-position record: one row per position, in update order, with the loss's own values
    assert list(pos.position) == list(range(4)) and list(pos["update"]) == [0, 0, 1, 1]
    assert set(pos.criterion) == {criterion} and pos["prompt"].str.contains("background").all()
    d_w = pos.e_pol_w - pos.e_ref_w
    np.testing.assert_allclose(pos.d_w, d_w, atol=1e-7)
    np.testing.assert_allclose(pos.logit, -0.5 * 2000.0 * (pos.d_w - pos.s * pos.d_r), rtol=1e-4, atol=1e-6)
    for key in ("logit_abs_median_first_update", "share_saturated", "share_clipped", "implicit_auc",
                "winner_only_auc", "anchor_auc_ci95", "random_flipper_accuracy"):
        assert key in summary


def test_oracle_refuses_data_without_a_ground_truth(project, tmp_path):  # noqa: F811 - not Shapeland captions
    root = fresh(project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 1, "criterion": "oracle"})
    run_select(cfg, 1, Layout(root))
    with pytest.raises(ValueError, match="real data has no oracle"):
        run_refsamples(cfg, 1, Layout(root), root / "data/cache")


@pytest.fixture
def project(tmp_path_factory, tiny_pipeline_dir):
    from tests.test_trainer import make_project

    return make_project(tmp_path_factory.mktemp("plain"), tiny_pipeline_dir, [f"a red circle {i}" for i in range(4)])


class _OrderScorer:
    """Scores a whole batch by the call it came in: the refsamples stage scores the winners first, then the
    reference samples, so (first, second) = (0, 1) makes every reference sample the preferred one."""

    def __init__(self, name, by_call):
        self.name, self.by_call, self.calls = name, by_call, 0

    def score(self, images, prompts):
        assert len(images) == len(prompts) and images[0].dtype == np.uint8 and images[0].shape[-1] == 3
        v = self.by_call[self.calls]
        self.calls += 1
        return np.full(len(images), v, dtype=np.float64)


@pytest.mark.parametrize("by_call, flipped", [((0.0, 1.0), True), ((1.0, 0.0), False)])
def test_reward_flips_where_the_scorer_prefers_the_reference_sample(shapeland_project, tmp_path, monkeypatch,
                                                                   by_call, flipped):  # noqa: F811
    from seppo.evaluation.scorers import base

    seen = {}

    def factory(name, models, device, batch_size, shared):
        seen["models"] = models
        return _OrderScorer(name, by_call)

    monkeypatch.setitem(base.REGISTRY, "pickscore_x100", factory)
    root = fresh(shapeland_project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2, "criterion": "reward", "reward_margin": 0.5})
    summary, pos = _round(cfg, root, {"pickscore_model": "models/pickscore"})
    assert seen["models"] == {"pickscore_model": "models/pickscore"}
    rewards = pd.read_parquet(Layout(root).refsamples(1) / REWARD_FILE)
    assert list(rewards.r_reference - rewards.r_winner) == [by_call[1] - by_call[0]] * 4
    assert (pos.s == (-1.0 if flipped else 1.0)).all()
    assert (pos.reward_margin == by_call[1] - by_call[0]).all()
    settings = json.loads((Layout(root).refsamples(1) / "settings.json").read_text())
    assert settings["reward"]["scorer"] == "pickscore_x100" and settings["reward"]["flip_rate"] == float(flipped)


def test_loss_calibration_by_hand():
    # crafted: 2 updates of 2 positions; |logit| = 1, 6, 0.5, 10; grad norms 0.5 and 3 against a clip of 1
    records = {"logit": np.array([1.0, -6.0, 0.5, 10.0])}
    history = [{"grad_norm": 0.5}, {"grad_norm": 3.0}]
    c = loss_calibration(records, history, 1.0, 2)
    assert c["logit_abs_median_first_update"] == 3.5 and c["logit_abs_median"] == 3.5
    assert c["share_saturated"] == 0.5 and c["share_clipped"] == 0.5 and c["grad_norm_median"] == 1.75


def test_probe_of_identical_checkpoints_sees_no_gap_and_ranks_at_chance(shapeland_project, tmp_path,
                                                                        monkeypatch):  # noqa: F811
    from seppo.evaluation.scorers import base as scorers
    from seppo.training.probe import run_probe

    root = fresh(shapeland_project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2})
    run_select(cfg, 1, Layout(root))
    run_refsamples(cfg, 1, Layout(root), root / "data/cache")
    base = root / "models/base"
    out = root / "reports/probe"
    s = run_probe(cfg, 1, Layout(root), root / "data/cache", base, base, draws=3, out=out)
    pos = pd.read_parquet(out / "round_1_positions.parquet")
    assert len(pos) == 4 and (pos.gap_mean == 0).all() and (pos.implicit_mean == 0).all()
    truth = oracle.load(Layout(root).refsamples(1))["oracle_flip"]
    if truth.any() and not truth.all():
        assert s["auc"]["anchor_gap_mean"]["auc"] == 0.5
    written = json.loads((out / "round_1.json").read_text())
    assert written["draws"] == 3 and "seconds" not in written and written["policy"] == str(base)
    # the same inputs give the same bytes
    first = (out / "round_1.json").read_bytes()
    run_probe(cfg, 1, Layout(root), root / "data/cache", base, base, draws=3, out=out)
    assert (out / "round_1.json").read_bytes() == first
    # with a scorer, the reward criterion's statistic is ranked too (here a scorer that prefers every reference sample)
    monkeypatch.setitem(scorers.REGISTRY, "pickscore_x100", lambda *a: _OrderScorer("pickscore_x100", (0.0, 1.0)))
    s = run_probe(cfg, 1, Layout(root), root / "data/cache", base, base, draws=3, out=out, scorer="pickscore_x100")
    pos = pd.read_parquet(out / "round_1_positions.parquet")
    assert (pos.r_reference - pos.r_winner == 1.0).all() and "reward_pickscore_x100" in s["auc"]
    # a trained policy is not the reference: its gaps are not all zero
    run_train(cfg, 1, Layout(root), root / "data/cache")
    run_probe(cfg, 1, Layout(root), root / "data/cache", root / "models/round_1", base, draws=3, out=out)
    assert (pd.read_parquet(out / "round_1_positions.parquet").gap_mean != 0).any()


def test_reward_makes_refsamples_depend_on_the_scorer_and_only_then():
    from seppo.config import parse_params
    from seppo.planning.dvc import build

    models = {"pickscore_model": "models/pickscore", "pickscore_processor": "models/pickscore"}
    reward = build(parse_params({"train": {"criterion": "reward"}, "evaluate": {"models": models}}))["stages"]
    assert "models/pickscore" in reward["refsamples_1"]["deps"]
    assert {"train.criterion", "train.reward_scorer", "evaluate.models"} <= set(reward["refsamples_1"]["params"])
    assert "runs/round_1/positions.parquet" in reward["train_1"]["outs"]
    plain = build(parse_params({"train": {"criterion": "none"}, "evaluate": {"models": models}}))["stages"]
    assert "models/pickscore" not in plain["refsamples_1"]["deps"]
    assert "train.criterion" not in plain["refsamples_1"]["params"]  # round 1's samples stay shared by criteria
    # declared whatever the loss: a study varies train.loss with -S on one planned dvc.yaml
    sft = build(parse_params({"train": {"loss": "sft"}}))["stages"]
    assert "runs/round_1/positions.parquet" in sft["train_1"]["outs"]


def test_reward_through_the_real_pickscore_code_path(shapeland_project, tiny_clip, tmp_path):  # noqa: F811
    from seppo.evaluation.scorers import build_scorers
    from seppo.training.oracle import decode_to_uint8
    from diffusers import AutoencoderKL
    from seppo.data.cache import LatentCache
    from seppo.training.reference_samples import load_refsamples

    d, _ = tiny_clip
    models = {"pickscore_model": str(d), "pickscore_processor": str(d)}
    root = fresh(shapeland_project, tmp_path)
    cfg = TrainConfig(**{**TINY, "updates_per_round": 2, "criterion": "reward"})
    summary, pos = _round(cfg, root, models)
    lay = Layout(root)
    rewards = pd.read_parquet(lay.refsamples(1) / REWARD_FILE)
    # recomputed independently: the reference samples decoded through theta_0's VAE, scored by the same scorer
    vae = AutoencoderKL.from_pretrained(root / "models/base", subfolder="vae")
    z_r, rows = load_refsamples(lay.refsamples(1))
    cache = LatentCache(root / "data/cache")
    caps = [cache.captions[c] for c in cache.caption_id[rows]]
    (scorer,) = build_scorers(["pickscore_x100"], models)
    np.testing.assert_allclose(rewards.r_reference, scorer.score(list(decode_to_uint8(vae, z_r)), caps), rtol=1e-5)
    expected = np.where(rewards.r_reference - rewards.r_winner > 0, -1.0, 1.0)
    np.testing.assert_array_equal(pos.s, expected)
    np.testing.assert_allclose(pos.anchor_gap, rewards.r_winner - rewards.r_reference, rtol=1e-6)


def test_an_sft_round_writes_its_positions_with_empty_pair_columns(shapeland_project, tmp_path):  # noqa: F811
    root = fresh(shapeland_project, tmp_path)
    summary, pos = _round(TrainConfig(**{**TINY, "updates_per_round": 2, "loss": "sft"}), root)
    assert list(pos.position) == [0, 1, 2, 3] and set(pos.criterion) == {"sft"}
    assert pos[["s", "d_w", "logit"]].isna().all().all() and "logit_abs_median" not in summary
