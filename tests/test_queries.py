"""Query selectors pick what their rule says, reproducibly, with distinct indices."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.feedback.queries import (
    DisagreementSelector,
    EntropySelector,
    StratifiedSelector,
    UniformSelector,
    make_selector,
    preference_entropy,
    rating_entropy,
    select_pairs,
)
from ratingrl.feedback.segments import FeedbackError, SegmentSet


def _candidates(n_eps: int = 10, per_ep: int = 6, h: int = 4) -> SegmentSet:
    rng = np.random.default_rng(0)
    n = n_eps * per_ep
    obs = rng.normal(size=(n, h, 3))
    # obs[..., 0] carries the "predicted reward": episode e is better than e-1.
    level = np.repeat(np.arange(n_eps), per_ep)[:, None] + rng.uniform(0, 0.5, size=(n, 1))
    obs[..., 0] = level
    return SegmentSet(obs, rng.normal(size=(n, h, 1)), None, np.repeat(np.arange(n_eps), per_ep))


def _returns_fn(spread: np.ndarray):
    """Ensemble of 3 whose members differ by ``spread[i]`` on candidate i."""

    def fn(obs, acts):
        base = obs[..., 0].sum(-1)
        return np.stack([base - spread, base, base + spread])

    return fn


def test_uniform_is_distinct_and_reproducible():
    cand = _candidates()
    a = UniformSelector().select(cand, 10, None, np.random.default_rng(1))
    b = UniformSelector().select(cand, 10, None, np.random.default_rng(1))
    assert len(set(a.tolist())) == 10 and np.array_equal(a, b)
    with pytest.raises(FeedbackError, match="cannot select"):
        UniformSelector().select(cand, 61, None, np.random.default_rng(1))


def test_disagreement_picks_largest_ensemble_std():
    cand = _candidates()
    spread = np.zeros(len(cand))
    spread[[3, 17, 42]] = [1.0, 3.0, 2.0]
    picked = DisagreementSelector().select(cand, 3, _returns_fn(spread), np.random.default_rng(0))
    assert picked.tolist() == [17, 42, 3]


def test_rating_entropy_is_zero_when_members_agree_and_max_when_split():
    agree = np.array([[0.0, 10.0, 5.0, 1.0]] * 3)
    assert np.allclose(rating_entropy(agree, 2), 0.0)
    split = agree.copy()
    split[0, 1] = -100.0  # one member calls candidate 1 bad
    ent = rating_entropy(split, 2)
    assert ent[1] > 0 and np.argmax(ent) == 1
    picked = EntropySelector(2).select(
        _candidates(1, 4), 1, lambda o, a: split, np.random.default_rng(0)
    )
    assert picked.tolist() == [1]


def test_stratified_takes_a_third_from_the_lowest_episodes():
    cand = _candidates(n_eps=10, per_ep=6)
    fn = _returns_fn(np.zeros(len(cand)))
    picked = StratifiedSelector().select(cand, 9, fn, np.random.default_rng(0))
    assert len(set(picked.tolist())) == 9
    eps = cand.episode_id[picked]
    assert (eps < 3).sum() == 3  # lowest-predicted 30% = episodes 0, 1, 2
    # with best_window_p = 1 each chosen window is its episode's highest-predicted one
    best = StratifiedSelector(best_window_p=1.0).select(cand, 9, fn, np.random.default_rng(0))
    pred = fn(cand.obs, cand.acts).mean(0)
    for i in best:
        same = cand.episode_id == cand.episode_id[i]
        assert pred[i] == pred[same].max()


def test_stratified_with_fewer_episodes_than_queries():
    cand = _candidates(n_eps=2, per_ep=6)
    picked = StratifiedSelector().select(
        cand, 8, _returns_fn(np.zeros(len(cand))), np.random.default_rng(3)
    )
    assert len(set(picked.tolist())) == 8


def test_pairs_never_compare_a_segment_with_itself_and_prefer_uncertain_pairs():
    cand = _candidates()
    fn = _returns_fn(np.zeros(len(cand)))
    pairs = select_pairs(cand, 5, fn, np.random.default_rng(0))
    assert pairs.shape == (5, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    r = fn(cand.obs, cand.acts)
    gaps = np.abs(r[0, pairs[:, 0]] - r[0, pairs[:, 1]])
    assert preference_entropy(np.zeros((3, 1)), np.zeros((3, 1)))[0] == pytest.approx(np.log(2))
    uniform = select_pairs(cand, 5, fn, np.random.default_rng(0), by="uniform")
    uniform_gaps = np.abs(r[0, uniform[:, 0]] - r[0, uniform[:, 1]])
    assert gaps.mean() < uniform_gaps.mean()  # entropy favours pairs that are hard to call


def test_make_selector_rejects_unknown_names():
    assert isinstance(make_selector("entropy", 4), EntropySelector)
    with pytest.raises(FeedbackError, match="unknown query selector"):
        make_selector("best")


def test_pair_selector_gives_distinct_pairs_and_rejects_unknown_rules():
    from ratingrl.feedback.queries import PairSelector

    cands = _candidates()
    rng = np.random.default_rng(0)
    ensemble = lambda obs, acts: np.stack([obs[..., 0].sum(1) * s for s in (1.0, 0.5, 2.0)])  # noqa: E731
    pairs = PairSelector("disagreement").select(cands, 7, ensemble, rng)
    assert pairs.shape == (7, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    again = PairSelector("disagreement").select(cands, 7, ensemble, np.random.default_rng(0))
    np.testing.assert_array_equal(pairs, again)  # same generator state, same queries
    with pytest.raises(FeedbackError, match="unknown pair selection"):
        PairSelector("stratified")
