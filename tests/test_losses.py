"""Losses against hand computations: values, the flip direction, ties, gradient signs."""

import math

import numpy as np
import pytest
import torch

from seppo.training.losses import anchor_sign, dpo_loss, per_sample_error, seppo_loss, sft_loss
from seppo.training.selection import select_reference, selection_rng


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def softplus(x):
    return math.log1p(math.exp(x))


def test_per_sample_error_is_a_mean_over_chw():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.ones(2, 3, 2, 2)
    target[1] *= 2
    assert per_sample_error(pred, target).tolist() == [1.0, 4.0]


def test_seppo_value_by_hand_when_policy_fits_the_winner_better():
    # policy beats reference on the winner (e_pol_w < e_ref_w): s = +1, reference sample is a loser
    e_pol_w, e_ref_w, e_pol_r, e_ref_r = t(0.10), t(0.12), t(0.30), t(0.29)
    loss, stats = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=100.0, criterion="sign")
    d_w, d_r = 0.10 - 0.12, 0.30 - 0.29
    expected = softplus(0.5 * 100.0 * (d_w - d_r))  # -log sigmoid(-b (D_w - D_r)) = softplus(b (D_w - D_r))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats.flip_rate == 0.0 and stats.implicit_acc == 1.0


def test_flip_direction_when_the_reference_fits_the_winner_better():
    # reference beats policy on the winner: s = -1, the reference sample is learned as a WINNER
    e_pol_w, e_ref_w, e_pol_r, e_ref_r = t(0.20), t(0.15), t(0.40), t(0.50)
    loss, stats = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=10.0, criterion="sign")
    d_w, d_r = 0.05, -0.10
    assert loss.item() == pytest.approx(softplus(5.0 * (d_w + d_r)), rel=1e-12)
    assert stats.flip_rate == 1.0
    # the same numbers with the criterion off ("none") treat it as a loser: a different value
    none, _ = seppo_loss(e_pol_w, e_ref_w, e_pol_r, e_ref_r, beta=10.0, criterion="none")
    assert none.item() == pytest.approx(softplus(5.0 * (d_w - d_r)), rel=1e-12)
    assert none.item() != pytest.approx(loss.item())


def test_gradient_signs_follow_the_criterion():
    def grads(criterion, e_pol_w, e_ref_w):
        pw, pr = torch.tensor([e_pol_w], requires_grad=True), torch.tensor([0.3], requires_grad=True)
        loss, _ = seppo_loss(pw, torch.tensor([e_ref_w]), pr, torch.tensor([0.3]), beta=10.0, criterion=criterion)
        loss.backward()
        return pw.grad.item(), pr.grad.item()

    # winner error always pushed down (positive gradient on e_pol_w => descent lowers it)
    gw, gr = grads("sign", 0.1, 0.2)  # s = +1: reference sample is a loser -> its error pushed UP
    assert gw > 0 and gr < 0
    gw, gr = grads("sign", 0.2, 0.1)  # s = -1: reference sample is a winner -> its error pushed DOWN
    assert gw > 0 and gr > 0
    gw, gr = grads("indicator", 0.2, 0.1)  # indicator drops the reference term instead of flipping
    assert gw > 0 and gr == 0.0


def test_ties_give_a_winner_only_term():
    e = t(0.25, 0.5)
    s = anchor_sign(e, e.clone(), "sign", tie_tol=0.0)
    assert s.tolist() == [0.0, 0.0]
    loss, stats = seppo_loss(e, e.clone(), t(0.9, 0.1), t(0.1, 0.9), beta=2000.0, criterion="sign")
    assert loss.item() == pytest.approx(math.log(2.0))  # D_w = 0 and the reference term vanishes
    assert stats.tie_rate == 1.0 and stats.flip_rate == 0.0
    # within tie_tol counts as a tie too; just outside does not
    assert anchor_sign(t(0.25), t(0.25 + 1e-9), "sign", tie_tol=1e-8).item() == 0.0
    assert anchor_sign(t(0.25), t(0.25 + 1e-7), "sign", tie_tol=1e-8).item() == 1.0


def test_beta_convention_half_beta_times_mean_error():
    loss, _ = seppo_loss(t(0.0), t(0.001), t(0.0), t(0.0), beta=2000.0, criterion="sign")
    # b = 1000 and D_w = -0.001 -> logit 1.0
    assert loss.item() == pytest.approx(softplus(-1.0), rel=1e-12)


def test_dpo_is_the_none_criterion_on_real_losers_and_sft_is_the_winner_error():
    args = (t(0.2, 0.1), t(0.15, 0.2), t(0.4, 0.3), t(0.5, 0.2))
    a, _ = dpo_loss(*args, beta=5.0)
    b, _ = seppo_loss(*args, beta=5.0, criterion="none")
    assert a.item() == b.item()
    assert sft_loss(t(0.2, 0.4))[0].item() == pytest.approx(0.3)


def test_unknown_criterion_is_rejected():
    with pytest.raises(ValueError, match="criterion must be one of"):
        anchor_sign(t(0.1), t(0.2), "flip", 0.0)


def test_selection_strategies():
    bank = ["theta0", "theta1", "theta2", "theta3"]
    assert select_reference(bank, "first", selection_rng(0, 4)) == 0
    assert select_reference(bank, "latest", selection_rng(0, 4)) == 3
    picks = [select_reference(bank, "uniform", selection_rng(seed, 4)) for seed in range(400)]
    counts = np.bincount(picks, minlength=4)
    assert counts.min() > 70  # all four drawn, roughly uniformly
    assert picks == [select_reference(bank, "uniform", selection_rng(seed, 4)) for seed in range(400)]
    with pytest.raises(ValueError, match="bank is empty"):
        select_reference([], "uniform", selection_rng(0, 1))
