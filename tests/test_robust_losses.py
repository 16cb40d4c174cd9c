"""Noise-robust rating losses (rewards/robust.py): exact values on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ratingrl.feedback.synthetic import linear_segments
from ratingrl.feedback.teachers import Bins, RatingTeacher, UniformRelabel
from ratingrl.rewards import robust
from ratingrl.rewards.methods import Batch, DataInfo, TrainingError, make_method, method_class
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, train_reward_model


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


# -- the registered method ---------------------------------------------------------------------
def _info(labels, k=4):
    return DataInfo("ratings", np.asarray(labels), np.arange(len(labels)), 10, k)


def test_ordinal_is_registered_and_checks_its_settings():
    assert method_class("ordinal") is robust.Ordinal
    assert make_method("ordinal", noise="confusion").noise == "confusion"
    with pytest.raises(TrainingError, match="ordinal noise='confusion' needs link='logit'"):
        make_method("ordinal", link="all_threshold")
    assert make_method("ordinal", link="all_threshold", noise="none").link == "all_threshold"
    with pytest.raises(TrainingError, match=r"ordinal initial_noise must be in \(0, 1\), got 1.5"):
        make_method("ordinal", initial_noise=1.5)
    with pytest.raises(TrainingError, match="ordinal noise 'gaussian' not in"):
        make_method("ordinal", noise="gaussian")
    with pytest.raises(TrainingError, match="ordinal spacing must be > 0, got 0"):
        make_method("ordinal", spacing=0)


def test_ordinal_starts_from_centred_thresholds_and_its_initial_noise():
    info = _info([0, 1, 2, 3])
    uniform = make_method("ordinal", noise="uniform", initial_noise=0.2, spacing=3.0)
    params = uniform.extra_parameters(info)
    theta = robust.ordered_thresholds(uniform.param_speed * params["thresholds"])
    torch.testing.assert_close(theta, torch.tensor([-3.0, 0.0, 3.0]))
    expected = robust.uniform_confusion(torch.tensor(0.2), 4)
    torch.testing.assert_close(uniform.confusion(params, 4), expected)
    full = make_method("ordinal", noise="confusion", initial_noise=0.2)
    t = full.confusion(full.extra_parameters(info), 4)
    torch.testing.assert_close(t.diagonal(), torch.full((4,), 0.8))
    torch.testing.assert_close(t.sum(-1), torch.ones(4))
    assert make_method("ordinal", noise="none").confusion(params, 4) is None


def test_ordinal_loss_is_the_corrected_nll_of_its_parameters():
    info = _info([0, 1, 2, 3, 1])
    method = make_method("ordinal")
    assert method.noise == "confusion"  # the default: a learned model of the teacher
    params = method.extra_parameters(info)
    returns, labels = torch.randn(2, 5), torch.tensor(info.labels)
    batch = Batch(returns, labels, None, info, params)
    theta = robust.ordered_thresholds(method.param_speed * params["thresholds"]).expand(2, 3)
    log_p = robust.cumulative_link_log_probs(returns, theta)
    expected = robust.noisy_label_nll(log_p, labels, method.confusion(params, 4))
    torch.testing.assert_close(method.loss(batch), expected)
    plain = make_method("ordinal", noise="none")
    batch = Batch(returns, labels, None, info, plain.extra_parameters(info))
    expected = robust.cumulative_link_nll(returns, labels, theta)
    torch.testing.assert_close(plain.loss(batch), expected)


def test_the_uniform_noise_model_recovers_the_relabelling_rate():
    # returns that order the segments perfectly, each mid-class; ~40% of the labels relabelled at
    # random. With the reward fixed, the likelihood's best rate is the maximum-likelihood one:
    # a share m of labels differs from the class, m = rate * 3/4, so rate = 4m/3
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(4), 250)
    noisy = np.where(rng.random(1000) < 0.4, rng.integers(0, 4, 1000), clean)
    returns = torch.tensor([-40.0, -10.0, 10.0, 40.0])[clean]  # mid-class for thresholds -20, 0, 20
    info = _info(noisy)
    method = make_method("ordinal", noise="uniform", spacing=20.0)
    params = method.extra_parameters(info)
    optimiser = torch.optim.Adam([params["noise_logit"]], lr=3e-3)
    for _ in range(200):
        optimiser.zero_grad()
        method.loss(Batch(returns, torch.tensor(noisy), None, info, params)).backward()
        optimiser.step()
    rate = torch.sigmoid(method.param_speed * params["noise_logit"]).item()
    assert rate == pytest.approx(4 / 3 * (noisy != clean).mean(), abs=0.002)


@pytest.mark.slow
def test_ordinal_with_a_noise_model_learns_from_noisy_ratings():
    seg, test = linear_segments(600, seed=0), linear_segments(300, seed=99)
    teacher = RatingTeacher(Bins.quantile(4, seg.true_returns), (UniformRelabel(0.4),))
    data = teacher.rate_dataset(seg, np.random.default_rng(0))
    config = TrainerConfig(
        epochs=30, batch_size=64, patience=30, net=RewardNetConfig(hidden=(32, 32), ensemble_size=2)
    )
    result = train_reward_model(data, make_method("ordinal", noise="uniform"), config)
    predicted = result.model.predict_returns(test.obs, test.acts).mean(0)
    assert kendall_tau(predicted, test.true_returns) > 0.85


def test_ordinal_can_keep_its_last_model_instead_of_trusting_held_out_labels():
    data = RatingTeacher(Bins.quantile(4, np.arange(200.0))).rate_dataset(
        linear_segments(200, seed=1), np.random.default_rng(1)
    )
    # pure noise: held-out tau peaks by chance, so label-based selection stops early
    data = type(data)(data.segments, np.random.default_rng(2).integers(0, 4, 200), data.scale)
    config = TrainerConfig(
        epochs=12, batch_size=32, patience=2, net=RewardNetConfig(hidden=(8,), ensemble_size=2)
    )
    by_labels = train_reward_model(data, make_method("ordinal", selection="labels"), config)
    last = train_reward_model(data, make_method("ordinal"), config)  # the default: last
    assert make_method("ordinal", selection="labels").selects_by_held_out_labels()
    assert not make_method("ordinal").selects_by_held_out_labels()
    assert len(by_labels.history) < 12
    assert len(last.history) == 12 and last.best_epoch == 12
    assert last.best_val_score == last.history[-1]["val_score"]  # still logged
