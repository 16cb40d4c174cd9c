"""Behaviour of the ordinal rewards: agreement with scipy, tolerance, ties, missing items, TRL."""

import json
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from ratingrl.ordinal.rewards import (
    FormatReward,
    JointReward,
    RankingReward,
    RegressionReward,
    RewardWeights,
    joint_scores,
    kendall_tau,
    parse_answers,
    ranking_scores,
    regression_scores,
)


def _scipy_tau(p: np.ndarray, t: np.ndarray) -> float:
    keep = ~np.isnan(p) & ~np.isnan(t)
    if keep.sum() < 2:
        return math.nan
    return float(kendalltau(p[keep], t[keep]).statistic)


@pytest.mark.parametrize("levels", [3, 6, 1000])
def test_kendall_tau_matches_scipy_on_random_batches(levels: int) -> None:
    rng = np.random.default_rng(levels)
    for n in (2, 3, 5, 8):
        pred = rng.integers(0, levels, size=(200, n)).astype(float)
        target = rng.integers(0, levels, size=(200, n)).astype(float)
        ours = kendall_tau(pred, target)
        ref = np.array([_scipy_tau(p, t) for p, t in zip(pred, target, strict=True)])
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12, equal_nan=True)
        expected_reward = (np.nan_to_num(ref, nan=0.0) + 1) / 2
        np.testing.assert_allclose(ranking_scores(pred, target), expected_reward, atol=1e-12)


def test_kendall_tau_drops_missing_items_like_scipy_on_the_rest() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(300, 6))
    target = rng.integers(0, 4, size=(300, 6)).astype(float)
    pred[rng.random(pred.shape) < 0.2] = np.nan  # missing answers
    target[rng.random(target.shape) < 0.1] = np.nan  # padding
    ref = np.array([_scipy_tau(p, t) for p, t in zip(pred, target, strict=True)])
    np.testing.assert_allclose(kendall_tau(pred, target), ref, atol=1e-12, equal_nan=True)


def test_ranking_reward_is_one_for_correct_order_and_zero_for_reversed() -> None:
    target = np.array([[10.0, 20.0, 30.0, 40.0]])
    assert ranking_scores([[1, 2, 3, 4]], target)[0] == 1.0
    assert ranking_scores([[4, 3, 2, 1]], target)[0] == 0.0
    # Order is all that matters, not scale.
    assert ranking_scores([[-5, 0, 100, 101]], target)[0] == 1.0


def test_ranking_reward_is_neutral_when_order_is_undefined() -> None:
    assert ranking_scores([[3.0]], [[7.0]])[0] == 0.5  # a single item
    assert ranking_scores([[1.0, 2.0]], [[5.0, 5.0]])[0] == 0.5  # tied targets
    assert ranking_scores([[2.0, 2.0]], [[1.0, 5.0]])[0] == 0.5  # tied predictions


def test_regression_reward_follows_the_tolerance_formula() -> None:
    delta = 3.0
    errors = np.array([0.0, 1.0, -1.5, 3.0, 3.01, -7.0])
    scores = regression_scores(errors[:, None], np.zeros((len(errors), 1)), delta)
    expected = np.where(np.abs(errors) <= delta, 1 - (errors / delta) ** 2, 0.0)
    np.testing.assert_allclose(scores, expected)
    assert scores[0] == 1.0 and scores[3] == 0.0 and scores[4] == 0.0


def test_regression_reward_averages_items_and_handles_missing_and_padding() -> None:
    pred = np.array([[1.0, np.nan, 5.0], [2.0, 2.0, 99.0]])
    target = np.array([[1.0, 2.0, 5.0], [2.0, 3.0, np.nan]])  # row 1 has two items only
    scores = regression_scores(pred, target, delta=2.0)
    np.testing.assert_allclose(scores, [2 / 3, (1.0 + 0.75) / 2])


def test_joint_reward_is_the_weighted_sum_and_gated_by_format() -> None:
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 10, size=(50, 4)).astype(float)
    target = rng.integers(0, 10, size=(50, 4)).astype(float)
    ok = rng.random(50) < 0.7
    w = RewardWeights(regression=0.7, ranking=0.2, format=0.1)
    joint = joint_scores(pred, target, ok, delta=2.5, weights=w)
    expected = (
        0.7 * regression_scores(pred, target, 2.5) + 0.2 * ranking_scores(pred, target) + 0.1
    ) * ok
    np.testing.assert_allclose(joint, expected)


def test_parse_answers_requires_exactly_one_number_per_item() -> None:
    ids = [["a", "b"]] * 6
    texts = [
        'reasoning first, then {"a": 1, "b": 2.5}',
        '{"a": 1}',
        '{"a": 1, "b": 2, "c": 3}',
        '{"a": true, "b": 2}',
        '{"a": 1, "b": NaN}',
        "[1, 2]",
    ]
    parsed = parse_answers(texts, ids)
    assert parsed.well_formed.tolist() == [True, False, False, False, False, False]
    np.testing.assert_array_equal(parsed.values[0], [1.0, 2.5])
    assert parsed.values[1, 0] == 1.0 and np.isnan(parsed.values[1, 1])


def test_trl_callables_score_text_and_conversational_completions() -> None:
    target = [json.dumps({"x": 2, "y": 8, "z": 5})] * 4
    completions = [
        '{"x": 2, "y": 8, "z": 5}',
        [{"role": "assistant", "content": '{"x": 8, "y": 2, "z": 5}'}],
        '{"x": 2, "y": 8}',
        "garbage",
    ]
    extra = {"prompts": ["p"] * 4, "trainer_state": None}  # TRL passes more columns
    reg = RegressionReward(delta=2.0)(completions, target=target, **extra)
    rank = RankingReward()(completions, target=target, **extra)
    fmt = FormatReward()(completions, target=target, **extra)
    joint = JointReward(delta=2.0, weights=RewardWeights(1, 1, 0.5))(completions, target=target)
    assert reg == [1.0, 1 / 3, 0.0, 0.0]
    assert rank == [1.0, 0.0, 0.0, 0.0]
    assert fmt == [1.0, 1.0, 0.0, 0.0]
    assert joint == pytest.approx([2.5, 1 / 3 + 0.5, 0.0, 0.0])
    assert all(isinstance(v, float) for v in reg + rank + fmt + joint)


def test_without_format_gate_partial_answers_get_partial_credit() -> None:
    target = [{"x": 2, "y": 8}]
    assert RegressionReward(delta=2.0, require_format=False)(['{"x": 2}'], target=target) == [0.5]
    assert RegressionReward(delta=2.0)(['{"x": 2}'], target=target) == [0.0]


def test_callables_have_names_for_trl_logging() -> None:
    rewards = (RegressionReward(), RankingReward(), FormatReward(), JointReward())
    names = {f.__name__ for f in rewards}
    assert names == {"ordinal_regression", "ordinal_ranking", "ordinal_format", "ordinal_joint"}


def test_missing_target_column_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="target"):
        RegressionReward()(["{}"], answer=[1])
