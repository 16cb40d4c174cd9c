"""Noise-robust rating losses (rewards/robust.py): exact values on small hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from ratingrl.rewards import robust


def test_ordered_thresholds_add_softplus_increments():
    raw = torch.tensor([1.0, math.log(math.e**2 - 1), math.log(math.e**0.5 - 1)])
    # softplus(log(e^d - 1)) = d: gaps of 2 and 0.5 after the first threshold
    torch.testing.assert_close(robust.ordered_thresholds(raw), torch.tensor([1.0, 3.0, 3.5]))
    # any raw values give strictly increasing thresholds
    theta = robust.ordered_thresholds(torch.tensor([[0.0, -30.0, 5.0], [2.0, 0.0, -1.0]]))
    assert torch.all(theta[..., 1:] > theta[..., :-1])


def test_ordered_logit_probabilities_by_hand():
    # K = 3, thresholds 0 and log 3, return 0: P(y<=0) = 1/2, P(y<=1) = 3/4
    log_p = robust.cumulative_link_log_probs(torch.tensor([0.0]), torch.tensor([0.0, math.log(3)]))
    torch.testing.assert_close(log_p.exp(), torch.tensor([[0.5, 0.25, 0.25]]))
    # K = 2, threshold 0, return log 3: P(y=0) = sigmoid(-log 3) = 1/4
    log_p = robust.cumulative_link_log_probs(torch.tensor([math.log(3)]), torch.tensor([0.0]))
    torch.testing.assert_close(log_p.exp(), torch.tensor([[0.25, 0.75]]))


def test_ordered_logit_nll_by_hand_and_over_members():
    theta = torch.tensor([0.0, math.log(3)])
    returns = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])  # [E=2, B=2]
    labels = torch.tensor([1, 2])
    # member 0: P(1) = 1/4, P(2) = 1/4; member 1, return log 3: P(y<=1) = sigmoid(0) = 1/2,
    # so P(2) = 1/2 for its first segment, whose label is 1: P(1) = 1/2 - 1/4 = 1/4
    expected = -(math.log(0.25) + math.log(0.25) + math.log(0.25) + math.log(0.25)) / 4
    nll = robust.cumulative_link_nll(returns, labels, theta.expand(2, 2))
    assert nll.item() == pytest.approx(expected)


def test_ordered_logit_stays_finite_far_from_the_thresholds():
    # float32 sigmoid(-100) is ~4e-44, so a naive difference of sigmoids would give log(0)
    returns = torch.tensor([100.0], requires_grad=True)
    log_p = robust.cumulative_link_log_probs(returns, torch.tensor([0.0, 1.0]))
    assert log_p[0, 0].item() == pytest.approx(-100.0, rel=1e-5)
    assert log_p[0, 1].item() == pytest.approx(-99.0 + math.log(1 - math.exp(-1)), rel=1e-5)
    assert log_p[0, 2].item() == pytest.approx(0.0, abs=1e-30)
    log_p[0, 0].backward()
    assert returns.grad.item() == pytest.approx(-1.0)  # the linear tail's slope, not NaN


def test_all_threshold_loss_by_hand():
    theta = torch.tensor([0.0, 2.0])
    returns = torch.tensor([1.0, 1.0, 3.0])
    labels = torch.tensor([0, 1, 0])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    # rating 0 at return 1: above both thresholds' "below" side by 1 and -1
    first = sp(1.0) + sp(-1.0)
    # rating 1 at return 1: 1 above theta_0 (wanted), 1 below theta_1 (wanted)
    second = sp(-1.0) + sp(-1.0)
    # rating 0 at return 3: wrong side of both thresholds, by 3 and 1
    third = sp(3.0) + sp(1.0)
    loss = robust.all_threshold_loss(returns, labels, theta)
    assert loss.item() == pytest.approx((first + second + third) / 3)


def test_confusion_matrices_are_row_stochastic():
    t = robust.confusion_from_logits(torch.randn(4, 4))
    torch.testing.assert_close(t.sum(-1), torch.ones(4))
    u = robust.uniform_confusion(torch.tensor(0.4), 4)
    torch.testing.assert_close(u.sum(-1), torch.ones(4))
    assert u[0, 0].item() == pytest.approx(0.7) and u[0, 1].item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="square"):
        robust.confusion_from_logits(torch.zeros(3, 4))


def test_corrected_nll_with_identity_is_the_plain_nll():
    returns, labels = torch.randn(3, 8), torch.randint(0, 4, (3, 8))
    theta = robust.ordered_thresholds(torch.randn(3))
    log_p = robust.cumulative_link_log_probs(returns, theta)
    plain = robust.cumulative_link_nll(returns, labels, theta)
    corrected = robust.noisy_label_nll(log_p, labels, torch.eye(4))
    torch.testing.assert_close(corrected, plain)
    # a teacher who always rates at random: every label has probability 1/K
    random = robust.noisy_label_nll(log_p, labels, robust.uniform_confusion(torch.tensor(1.0), 4))
    assert random.item() == pytest.approx(math.log(4))


def test_corrected_nll_by_hand():
    log_p = torch.log(torch.tensor([[0.8, 0.2]]))
    confusion = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    # P(rated 1) = 0.8 * 0.1 + 0.2 * 0.7 = 0.22
    nll = robust.noisy_label_nll(log_p, torch.tensor([1]), confusion)
    assert nll.item() == pytest.approx(-math.log(0.22))
    with pytest.raises(ValueError, match=r"confusion must be \[2, 2\]"):
        robust.noisy_label_nll(log_p, torch.tensor([1]), torch.eye(3))


def test_a_uniform_noise_model_bounds_what_a_far_mislabel_costs():
    theta = torch.tensor([-2.0, 0.0, 2.0])
    returns = torch.tensor([50.0], requires_grad=True)  # far above every threshold, rated 0
    log_p = robust.cumulative_link_log_probs(returns, theta)
    plain = robust.noisy_label_nll(log_p, torch.tensor([0]), torch.eye(4))
    (plain_grad,) = torch.autograd.grad(plain, returns, retain_graph=True)
    rho = torch.tensor(0.4)
    corrected = robust.noisy_label_nll(log_p, torch.tensor([0]), robust.uniform_confusion(rho, 4))
    (corrected_grad,) = torch.autograd.grad(corrected, returns)
    assert plain.item() == pytest.approx(52.0, rel=1e-4)  # grows with the distance
    assert plain_grad.item() == pytest.approx(1.0)
    assert corrected.item() == pytest.approx(-math.log(0.1), rel=1e-6)  # at most -log(rho / K)
    assert abs(corrected_grad.item()) < 1e-18  # and the mislabel stops pulling
