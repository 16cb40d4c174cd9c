"""The rater model ("raters"): its losses against exact answers, consistency from repeats, and
what training on a crowd learns about each rater."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ratingrl.feedback.crowd import Crowd, SimulatedRater, draw_crowd, rescale_by_rater
from ratingrl.feedback.segments import RatedSegments, RatingScale
from ratingrl.feedback.synthetic import linear_segments
from ratingrl.rewards.methods import TrainingError, make_method
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.raters import (
    RaterModel,
    consistency_weights,
    ordered_logit_log_prob,
    ordered_thresholds,
    rater_ordinal_loss,
    repeat_consistency,
)
from ratingrl.rewards.registry import DataInfo
from ratingrl.rewards.training import TrainerConfig, train_reward_model

FAST = TrainerConfig(
    epochs=25, batch_size=64, patience=25, net=RewardNetConfig(hidden=(32, 32), ensemble_size=2)
)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


# -- losses ------------------------------------------------------------------------------------
def test_ordered_thresholds_add_softplus_gaps():
    first = torch.tensor([0.0, -1.0])
    raw = torch.tensor([[0.0, math.log(math.e - 1)], [0.0, -5.0]])
    got = ordered_thresholds(first, raw)
    log2 = math.log(2.0)
    expected = [
        [0.0, log2, log2 + 1.0],
        [-1.0, -1.0 + log2, -1.0 + log2 + math.log1p(math.exp(-5))],
    ]
    torch.testing.assert_close(got, torch.tensor(expected))
    assert torch.all(got.diff(dim=-1) > 0)


def test_ordered_logit_log_prob_matches_the_cumulative_logit_exactly():
    t, s, x = [-1.0, 0.5, 2.0], 2.0, 0.3
    cum = [sigmoid(s * (tk - x)) for tk in t]
    exact4 = [cum[0], cum[1] - cum[0], cum[2] - cum[1], 1 - cum[2]]
    exact3 = [cum[0], cum[1] - cum[0], 1 - cum[1]]  # a 3-class rater ignores the third threshold
    own = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    k = torch.tensor([4, 4, 4, 4, 3, 3, 3])
    thresholds = torch.tensor([t] * 7)
    got = ordered_logit_log_prob(torch.full((7,), x), own, k, thresholds, torch.full((7,), s))
    torch.testing.assert_close(got.exp(), torch.tensor(exact4 + exact3), rtol=1e-5, atol=1e-7)
    assert sum(exact4) == pytest.approx(1.0) and sum(exact3) == pytest.approx(1.0)


def test_ordered_logit_stays_finite_for_extreme_returns():
    x = torch.tensor([-1e4, 1e4, 0.0, 1e4], requires_grad=True)
    own = torch.tensor([0, 2, 1, 0])
    t = torch.tensor([[-1.0, 1.0]] * 4)
    s = torch.tensor([3.0, 3.0, 3.0, 3.0], requires_grad=True)
    logp = ordered_logit_log_prob(x, own, torch.tensor([3, 3, 3, 3]), t, s)
    assert torch.isfinite(logp).all()
    assert logp[:2].abs().max() < 1e-6  # certain and right: log 1
    assert logp[3] < -1e4  # certain and wrong: very unlikely, but a number
    logp.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(s.grad).all()


def test_rater_ordinal_loss_standardises_and_weights_labels():
    pred = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])  # same order, other scale
    own, k = torch.tensor([0, 1, 1]), torch.tensor([2, 2, 2])
    t, s = torch.zeros(3, 1), torch.ones(3)
    x = [-math.sqrt(1.5), 0.0, math.sqrt(1.5)]  # (pred - mean) / population sd, both members
    nll = [-math.log(sigmoid(-x[0])), -math.log(1 - sigmoid(-x[1])), -math.log(1 - sigmoid(-x[2]))]
    got = rater_ordinal_loss(pred, own, k, t, s, torch.ones(3))
    assert got.item() == pytest.approx(sum(nll) / 3, rel=1e-5)
    weighted = rater_ordinal_loss(pred, own, k, t, s, torch.tensor([2.0, 1.0, 0.0]))
    assert weighted.item() == pytest.approx((2 * nll[0] + nll[1]) / 3, rel=1e-5)


# -- consistency from repeats ------------------------------------------------------------------
def test_repeat_consistency_is_one_minus_the_relative_repeat_difference():
    # rater 0 rated segments a, b, c and repeated a (same) and b (one class off)
    own = np.array([0, 2, 1, 0, 1, 0, 1])
    codes = np.array([0, 0, 0, 0, 0, 1, 1])
    keys = np.array(["a", "b", "c", "a", "b", "d", "e"], dtype=object)
    consistency, pairs = repeat_consistency(own, codes, keys, 2)
    ratings = np.array([0, 2, 1, 0, 1], dtype=float)
    spread = np.abs(ratings[:, None] - ratings[None, :]).mean()  # 20/25 = 0.8
    assert spread == pytest.approx(0.8)
    assert consistency[0] == pytest.approx(1 - 0.5 / 0.8)
    assert pairs.tolist() == [2, 0] and math.isnan(consistency[1])


def test_consistency_weights_shrink_to_the_crowd_and_trust_everyone_without_repeats():
    w = consistency_weights(np.array([1.0, 0.0, np.nan]), np.array([3, 3, 0]), 3.0, 0.05)
    crowd = 0.5  # pair-weighted mean of 1 and 0
    assert w.tolist() == pytest.approx([(3 + 3 * crowd) / 6, (3 * crowd) / 6, crowd])
    none = consistency_weights(np.full(3, np.nan), np.zeros(3, dtype=int), 3.0, 0.05)
    assert none.tolist() == [1.0, 1.0, 1.0]
    floor = consistency_weights(np.array([-0.5]), np.array([100]), 0.0, 0.05)
    assert floor.tolist() == [0.05]


def test_a_careless_rater_scores_low_on_repeats():
    rng = np.random.default_rng(0)
    returns = rng.uniform(0, 30, 300)
    keys = np.concatenate([np.arange(300), np.arange(100)])
    careful = SimulatedRater("a", (10.0, 20.0), noise=0.5)
    careless = SimulatedRater("b", (10.0, 20.0), random_answer=1.0)
    own = np.concatenate([r.rate(returns[keys], 0, rng) for r in (careful, careless)])
    codes = np.repeat([0, 1], 400)
    consistency, pairs = repeat_consistency(own, codes, np.concatenate([keys, keys]), 2)
    assert pairs.tolist() == [100, 100]
    assert consistency[0] > 0.9 and abs(consistency[1]) < 0.25


# -- the method --------------------------------------------------------------------------------
def crowd_data(n=600, repeats=60, seed=0, careless=1, raters=4):
    seg = linear_segments(n, seed=seed)
    crowd = draw_crowd(raters, seg.true_returns, np.random.default_rng(seed), n_careless=careless)
    return crowd, crowd.rate(seg, np.random.default_rng(seed + 1), repeats=repeats)


def held_out_tau(model, seed=99):
    test = linear_segments(400, seed=seed)
    return kendall_tau(model.predict_returns(test.obs, test.acts).mean(0), test.true_returns)


def test_raters_is_registered_and_checks_its_settings():
    method = make_method("raters", sharpness=2.0, repeat_weights=False)
    assert isinstance(method, RaterModel) and method.name == "raters"
    with pytest.raises(TrainingError, match="sharpness"):
        make_method("raters", sharpness=0.0)
    with pytest.raises(TrainingError, match="speed"):
        make_method("raters", speed=0.0)
    with pytest.raises(TrainingError, match="min_weight"):
        make_method("raters", min_weight=0.0)
    info = DataInfo("ratings", np.array([0, 1]), np.array([0, 1]), 10, 2)
    with pytest.raises(TrainingError, match="DataInfo.dataset"):
        method.check_data(info)


def test_training_on_a_crowd_learns_the_reward_and_who_is_careless():
    crowd, data = crowd_data()
    result = train_reward_model(data, make_method("raters"), FAST)
    assert held_out_tau(result.model) > 0.75
    weights = result.extra["rater_weights"]
    names = list(dict.fromkeys(data.rater))
    careless = [names.index(r.name) for r in crowd.raters if r.careless]
    careful = [i for i in range(len(names)) if i not in careless]
    assert max(weights[i] for i in careless) < min(weights[i] for i in careful)
    sharp = np.exp(np.array(result.extra["log_sharpness"]) * RaterModel().speed)
    assert max(sharp[i] for i in careless) < min(sharp[i] for i in careful)
    assert result.extra["rater_classes"] == [
        float(next(r.n_classes for r in crowd.raters if r.name == n)) for n in names
    ]


def test_a_strict_rater_gets_higher_thresholds_than_a_lenient_one():
    seg = linear_segments(800, seed=3)
    g = seg.true_returns
    lo, hi = np.quantile(g, [1 / 3, 2 / 3])
    crowd = Crowd(
        (SimulatedRater("strict", (lo + 3, hi + 3)), SimulatedRater("lenient", (lo - 3, hi - 3)))
    )
    data = crowd.rate(seg, np.random.default_rng(0))
    result = train_reward_model(data, make_method("raters"), FAST)
    first = np.array(result.extra["threshold_first"]) * RaterModel().speed
    names = list(dict.fromkeys(data.rater))
    assert first[names.index("strict")] > first[names.index("lenient")] + 0.5
    assert held_out_tau(result.model) > 0.8


def test_one_rater_on_one_scale_is_a_plain_ordered_logit():
    seg = linear_segments(500, seed=4)
    edges = np.quantile(seg.true_returns, [0.25, 0.5, 0.75])
    ratings = np.searchsorted(edges, seg.true_returns, side="right")
    data = RatedSegments(seg, ratings, RatingScale(4))  # no rater column
    result = train_reward_model(data, make_method("raters"), FAST)
    assert held_out_tau(result.model) > 0.8
    assert len(result.extra["threshold_first"]) == 1 and result.extra["rater_classes"] == [4.0]
    assert result.extra["rater_weights"] == [1.0]  # no repeats: full weight


def test_the_rater_model_beats_naive_pooling_on_a_biased_crowd():
    """Raters with very different boundaries and class counts: pooling by fraction mixes them,
    the rater model keeps each one's own scale."""
    seg = linear_segments(600, seed=5)
    g = seg.true_returns
    raters = []
    for i, (k, shift) in enumerate([(3, -1.5), (8, 1.5), (5, 0.0), (2, 1.0)]):
        edges = np.quantile(g, np.arange(1, k) / k) + shift
        raters.append(SimulatedRater(f"r{i}", tuple(edges), noise=0.2))
    data = Crowd(tuple(raters)).rate(seg, np.random.default_rng(0))
    ours = held_out_tau(train_reward_model(data, make_method("raters"), FAST).model)
    pooled = rescale_by_rater(data, 4)
    naive = held_out_tau(train_reward_model(pooled, make_method("rbrl"), FAST).model)
    assert ours > naive + 0.02
