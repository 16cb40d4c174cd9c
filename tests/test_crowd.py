import numpy as np
import pytest

from ratingrl.feedback.crowd import (
    Crowd,
    CrowdConfig,
    SimulatedRater,
    draw_crowd,
    draw_rater,
    own_class,
    rater_classes,
    rescale_by_rater,
    to_common,
)
from ratingrl.feedback.io import load_rated, save_rated
from ratingrl.feedback.segments import FeedbackError, RatedSegments, RatingScale, SegmentSet
from ratingrl.feedback.teachers import Bins


def segments_with_returns(returns, horizon=4):
    returns = np.asarray(returns, dtype=float)
    n = len(returns)
    rewards = np.repeat(returns[:, None] / horizon, horizon, axis=1)
    obs = np.arange(n * horizon * 2, dtype=float).reshape(n, horizon, 2)  # distinct segments
    return SegmentSet(obs, np.zeros((n, horizon, 1)), rewards, np.arange(n), np.zeros(n))


def test_a_careful_rater_without_drift_or_noise_reproduces_fixed_bins():
    bins = Bins.fixed([0, 10, 20, 35, 50])
    rater = SimulatedRater("ann", bins.edges)
    returns = np.random.default_rng(0).uniform(-10, 60, 500)
    got = rater.rate(returns, given=0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(got, bins.classify(returns))
    assert rater.n_classes == bins.n_classes == 4


def test_positive_drift_makes_a_rater_stricter_over_the_session():
    returns = np.full(200, 15.0)
    stricter = SimulatedRater("ann", (10.0, 20.0), drift=0.05)  # +10 over 200 ratings
    got = stricter.rate(returns, given=0, rng=np.random.default_rng(0))
    assert got[0] == 1 and got[-1] == 0
    assert np.all(np.diff(got) <= 0)  # never kinder later
    # the boundary passes 15 once 0.05 * k > 5, i.e. from the 101st rating on
    assert np.flatnonzero(got == 0)[0] == 101
    kinder = SimulatedRater("bob", (10.0, 20.0), drift=-0.05)
    got = kinder.rate(returns, given=0, rng=np.random.default_rng(0))
    assert got[0] == 1 and got[-1] == 2 and np.all(np.diff(got) >= 0)


def test_drift_continues_from_the_ratings_already_given():
    rater = SimulatedRater("ann", (10.0, 20.0), drift=0.05)
    late = rater.rate(np.array([15.0]), given=150, rng=np.random.default_rng(0))
    assert late.tolist() == [0]


def test_noise_makes_repeats_disagree_and_no_noise_keeps_them():
    returns = np.repeat(np.linspace(0, 30, 50), 2)  # each clip twice
    exact = SimulatedRater("ann", (10.0, 20.0)).rate(returns, 0, np.random.default_rng(0))
    assert np.array_equal(exact[::2], exact[1::2])
    noisy_rater = SimulatedRater("bob", (10.0, 20.0), noise=5.0)
    noisy = noisy_rater.rate(returns, 0, np.random.default_rng(0))
    assert np.mean(noisy[::2] != noisy[1::2]) > 0.1


def test_a_random_answerer_uses_every_class_about_equally():
    rater = SimulatedRater("ann", (10.0, 20.0, 30.0), random_answer=1.0)
    got = rater.rate(np.full(4000, 15.0), 0, np.random.default_rng(0))
    shares = np.bincount(got, minlength=4) / 4000
    np.testing.assert_allclose(shares, 0.25, atol=0.03)


def test_drawn_class_counts_follow_the_study_and_the_ratings_use_them():
    ref = np.random.default_rng(0).normal(0, 10, 2000)
    rng = np.random.default_rng(1)
    raters = [draw_rater(f"r{i}", ref, rng) for i in range(2000)]
    k = np.array([r.n_classes for r in raters])
    assert k.min() >= 2 and k.max() <= 10
    # N(6.4, 2.3) rounded and clipped to 2..10: mean ~6.35, sd ~2.15
    assert 6.2 < k.mean() < 6.5 and 2.0 < k.std() < 2.3
    for rater in raters[:50]:
        got = rater.rate(ref, 0, rng)
        assert got.max() <= rater.n_classes - 1 and got.min() >= 0
        if not rater.careless and rater.noise < 0.25 * 10:  # unbiased enough to use them all
            assert len(np.unique(got)) >= rater.n_classes - 2


def test_draw_rater_biases_boundaries_and_makes_careless_raters_noisy():
    ref = np.random.default_rng(0).normal(0, 10, 2000)
    rng = np.random.default_rng(3)
    careful = [draw_rater("a", ref, rng) for _ in range(200)]
    careless = [draw_rater("b", ref, rng, careless=True) for _ in range(20)]
    firsts = np.array([r.edges[0] - np.quantile(ref, 1 / r.n_classes) for r in careful])
    assert firsts.std() > 1.0  # raters do not share boundaries
    assert max(r.noise for r in careful) <= 0.2 * ref.std() + 1e-9
    assert all(r.noise == pytest.approx(ref.std()) and r.random_answer == 0.3 for r in careless)
    assert {r.drift != 0 for r in careful} == {True}


def test_common_scale_round_trips_every_rater_scale():
    for n in range(2, 11):
        for k in range(2, n + 1):
            own = np.arange(k)
            common = to_common(own, k, n)
            assert common[0] == 0 and common[-1] == n - 1
            assert np.all(np.diff(common) > 0)  # order kept, no two classes merged
            np.testing.assert_array_equal(own_class(common, k, n), own)
    with pytest.raises(FeedbackError, match="class counts"):
        to_common(np.array([0]), 5, 4)


def test_crowd_rates_with_raters_repeats_and_their_class_counts():
    ref = np.random.default_rng(0).normal(0, 10, 1000)
    segments = segments_with_returns(ref[:300])
    crowd = draw_crowd(5, ref, np.random.default_rng(1), n_careless=1)
    data = crowd.rate(segments, np.random.default_rng(2), repeats=25)
    assert len(data) == 325
    names, counts = np.unique(data.rater, return_counts=True)
    assert names.tolist() == [f"rater{i:02d}" for i in range(5)]
    assert counts.tolist() == [65] * 5  # 60 segments + 5 repeats each
    assert crowd.given == dict(zip(names.tolist(), counts.tolist(), strict=True))
    assert [r.careless for r in crowd.raters] == [False] * 4 + [True]
    assert data.scale.n == max(r.n_classes for r in crowd.raters)
    classes = rater_classes(data)
    assert classes == {r.name: r.n_classes for r in crowd.raters}
    # each segment once, plus repeats by the rater who rated it first
    ids = data.segments.episode_id
    assert len(np.unique(ids)) == 300
    for name in names:
        mine = ids[data.rater == name]
        assert len(mine) - len(np.unique(mine)) == 5
    for rater in crowd.raters:  # ratings are the rater's own classes on the common scale
        own = own_class(data.ratings[data.rater == rater.name], rater.n_classes, data.scale.n)
        assert own.max() < rater.n_classes
        back = to_common(own, rater.n_classes, data.scale.n)
        np.testing.assert_array_equal(back, data.ratings[data.rater == rater.name])


def test_crowd_repeats_come_later_and_a_noiseless_rater_repeats_itself():
    returns = np.linspace(0, 30, 40)
    crowd = Crowd((SimulatedRater("ann", (10.0, 20.0)), SimulatedRater("bob", (5.0, 25.0))))
    data = crowd.rate(segments_with_returns(returns), np.random.default_rng(0), repeats=10)
    for name in ("ann", "bob"):
        ids = data.segments.episode_id[data.rater == name]
        ratings = data.ratings[data.rater == name]
        for seg in np.unique(ids):
            rows = np.flatnonzero(ids == seg)
            assert len(set(ratings[rows])) == 1


def test_crowd_is_seeded_and_keeps_its_session_and_configuration():
    ref = np.random.default_rng(0).normal(0, 10, 500)
    segments = segments_with_returns(ref[:100])

    def run():
        crowd = draw_crowd(4, ref, np.random.default_rng(5), n_careless=1)
        return crowd, crowd.rate(segments, np.random.default_rng(6), repeats=8)

    (c1, d1), (c2, d2) = run(), run()
    assert c1.to_dict() == c2.to_dict()
    np.testing.assert_array_equal(d1.ratings, d2.ratings)
    np.testing.assert_array_equal(d1.rater, d2.rater)
    again = Crowd.from_dict(d1.source)
    assert again.raters == c1.raters and again.given == c1.given
    assert again.to_dict() == c1.to_dict()


def test_rater_classes_survive_saving(tmp_path):
    ref = np.random.default_rng(0).normal(0, 10, 500)
    crowd = draw_crowd(3, ref, np.random.default_rng(5))
    data = crowd.rate(segments_with_returns(ref[:60]), np.random.default_rng(6))
    save_rated(data, tmp_path / "crowd.parquet")
    loaded = load_rated(tmp_path / "crowd.parquet")
    assert rater_classes(loaded) == rater_classes(data)


def test_data_from_one_scale_gives_every_rater_that_scale():
    data = RatedSegments(
        segments_with_returns([0.0, 1.0, 2.0]),
        np.array([0, 2, 4]),
        RatingScale(5),
        rater=np.array(["a", "b", "a"], dtype=object),
    )
    assert rater_classes(data) == {"a": 5, "b": 5}
    unnamed = RatedSegments(data.segments, data.ratings, data.scale)
    assert rater_classes(unnamed) == {None: 5}


def test_rescale_by_rater_puts_each_own_class_where_its_midpoint_falls():
    # rater a has 2 classes, b has 8, both stored on the common scale of 8
    own_a, own_b = np.array([0, 1]), np.arange(8)
    ratings = np.concatenate([to_common(own_a, 2, 8), to_common(own_b, 8, 8)])
    data = RatedSegments(
        segments_with_returns(np.zeros(10)),
        ratings,
        RatingScale(8),
        {"rater_classes": {"a": 2, "b": 8}},
        np.array(["a"] * 2 + ["b"] * 8, dtype=object),
    )
    four = rescale_by_rater(data, 4)
    assert four.scale.n == 4
    assert four.ratings.tolist() == [1, 3] + [0, 0, 1, 1, 2, 2, 3, 3]
    np.testing.assert_array_equal(four.rater, data.rater)


def test_bad_raters_and_crowds_are_clear_errors():
    with pytest.raises(FeedbackError, match="strictly increasing"):
        SimulatedRater("a", (2.0, 1.0))
    with pytest.raises(FeedbackError, match="random_answer"):
        SimulatedRater("a", (1.0,), random_answer=2.0)
    with pytest.raises(FeedbackError, match="distinct names"):
        Crowd((SimulatedRater("a", (1.0,)), SimulatedRater("a", (2.0,))))
    with pytest.raises(FeedbackError, match="n_careless"):
        draw_crowd(2, np.arange(100.0), np.random.default_rng(0), n_careless=3)
    with pytest.raises(FeedbackError, match="min_classes"):
        CrowdConfig(min_classes=1)
    with pytest.raises(FeedbackError, match="rater_classes"):
        data = RatedSegments(
            segments_with_returns([0.0, 1.0]),
            np.array([0, 1]),
            RatingScale(3),
            {"rater_classes": {"a": 7}},
            np.array(["a", "a"], dtype=object),
        )
        rater_classes(data)
