import math

import pytest
import torch

from ratingrl.rewards import losses


def test_rbrl_boundaries_follow_the_label_mix():
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    labels = torch.tensor([0, 0, 1, 2, 2])
    x = (pred - 0) / 4
    b = losses.rbrl_boundaries(x, labels, 3)
    # 2 labels of class 0 -> b1 = 2nd smallest; 3 of classes 0-1 -> b2 = 3rd smallest
    torch.testing.assert_close(b, torch.tensor([0.0, 0.25, 0.5, 1.0]))


def test_rbrl_logits_are_positive_inside_the_class_interval():
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])  # normalised: 0, .25, .5, .75, 1
    labels = torch.tensor([0, 0, 1, 2, 2])  # boundaries 0, .25, .5, 1
    logits = losses.rbrl_logits(pred, labels, 3, kappa=30.0)
    assert logits[3, 2] == pytest.approx(-30.0 * (0.75 - 0.5) * (0.75 - 1.0))
    assert logits[3, 2] > 0 and logits[3, 1] < 0 and logits[3, 0] < 0
    assert logits[2, 1] == pytest.approx(0.0)  # a sample on a boundary sits at logit 0
    assert logits.shape == (5, 3)


def test_rbrl_loss_prefers_the_right_order():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    right = torch.tensor([0.0, 0.1, 1.0, 1.1, 2.0, 2.1])
    wrong = right.flip(0)
    assert losses.rbrl_loss(right, labels, 3) < losses.rbrl_loss(wrong, labels, 3)


def test_rbrl_loss_batches_over_members():
    labels = torch.tensor([[0, 1, 2, 1], [2, 1, 0, 0]])
    pred = torch.randn(2, 4)
    both = losses.rbrl_loss(pred, labels, 3)
    each = [losses.rbrl_loss(pred[i], labels[i], 3) for i in range(2)]
    torch.testing.assert_close(both, torch.stack(each).mean())


def test_rmse_loss_is_zero_and_flat_once_ordered_with_margin():
    labels = torch.tensor([[0, 1, 2, 3]])
    pred = torch.tensor([[0.0, 5.0, 10.0, 15.0]], requires_grad=True)
    loss = losses.rmse_loss(pred, labels, regularization_strength=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    assert torch.all(pred.grad == 0)


def test_rmse_loss_penalises_misordering_and_uses_rank_positions():
    labels = torch.tensor([[0, 2, 3]])  # class 1 absent: ranked like 0, 1, 2
    good = torch.tensor([[0.0, 5.0, 10.0]])
    bad = torch.tensor([[10.0, 5.0, 0.0]])
    assert losses.rmse_loss(good, labels).item() == pytest.approx(0.0, abs=1e-10)
    # reversed order: ranks (3, 2, 1) vs targets (1, 2, 3): squared errors 4 + 0 + 4
    assert losses.rmse_loss(bad, labels, reduction="sum_per_group").item() == pytest.approx(8.0)
    assert losses.rmse_loss(bad, labels).item() == pytest.approx(8.0 / 3)  # R4's released mean


def test_rmse_loss_rejects_single_class_groups():
    with pytest.raises(ValueError, match="single rating class"):
        losses.rmse_loss(torch.zeros(2, 3), torch.tensor([[1, 1, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        losses.rmse_loss(torch.zeros(2, 1), torch.zeros(2, 1))


def test_weight_norm_penalty_is_per_tensor_frobenius():
    w1 = torch.full((2, 3, 4), 1.0)  # each member: sqrt(12)
    w2 = torch.zeros(2, 4, 1)
    assert losses.weight_norm_penalty([w1, w2]).item() == pytest.approx(math.sqrt(12))


def test_multitask_learned_weighting_formula():
    pred = torch.tensor([0.1, 0.9, 0.3, 2.0])
    labels = torch.tensor([0, 2, 1, 2])
    log_vars = torch.tensor([0.5, -0.3])
    l_cls = losses.rbrl_loss(pred, labels, 3)
    target = torch.log1p(0.1 * 10 * labels.float())
    l_reg = ((pred - target) ** 2).mean()
    expected = math.exp(-0.5) * l_cls + 0.5 * math.exp(0.3) * l_reg + 0.5 * (0.5 - 0.3)
    got = losses.multitask_loss(pred, labels, 3, log_vars, horizon=10, alpha=0.1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    eq = losses.multitask_loss(pred, labels, 3, log_vars, horizon=10, alpha=0.1, weighting="equal")
    assert eq.item() == pytest.approx(0.5 * (l_cls + l_reg).item(), rel=1e-6)
    cls = losses.multitask_loss(
        pred, labels, 3, log_vars, horizon=10, alpha=0.1, weighting="classification"
    )
    assert cls.item() == pytest.approx(l_cls.item())
    with pytest.raises(ValueError, match="weighting 'both'"):
        losses.multitask_loss(pred, labels, 3, log_vars, horizon=10, alpha=0.1, weighting="both")


def test_bt_loss_matches_bradley_terry_and_handles_equal():
    g0, g1 = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([1.0, 0.0, 0.5])
    p = torch.sigmoid(g1 - g0)
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert losses.bt_loss(g0, g1, labels).item() == pytest.approx(expected.item())


def test_regression_loss():
    pred = torch.tensor([0.0, 2.0])
    assert losses.regression_loss(pred, torch.tensor([0, 1]), scale=2.0).item() == 0.0
