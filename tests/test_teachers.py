import math

import numpy as np
import pytest

from ratingrl.feedback.segments import FeedbackError, SegmentSet
from ratingrl.feedback.teachers import (
    AdjacentSwap,
    Bins,
    DynamicRatingTeacher,
    GaussianReturnNoise,
    PreferenceTeacher,
    RatingTeacher,
    UniformRelabel,
    teacher_from_dict,
)


def segments_with_returns(returns, horizon=5):
    returns = np.asarray(returns, dtype=float)
    rewards = np.repeat(returns[:, None] / horizon, horizon, axis=1)
    n = len(returns)
    return SegmentSet(np.zeros((n, horizon, 2)), np.zeros((n, horizon, 1)), rewards)


def test_fixed_bins_put_edges_and_outliers_in_the_right_class():
    bins = Bins.fixed([0, 10, 20, 50])
    got = bins.classify(np.array([-5, 0, 9.99, 10, 20, 49, 50, 1e6]))
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 2, 2, 2, 2])  # top edge stays in top class


def test_equal_width_and_quantile_bins():
    bins = Bins.equal_width(5, 0, 50)
    assert bins.edges == (10, 20, 30, 40)
    ref = np.arange(1000.0)
    q = Bins.quantile(4, ref)
    assert np.bincount(q.classify(ref)).tolist() == [250, 250, 250, 250]
    with pytest.raises(FeedbackError, match="not distinct"):
        Bins.quantile(4, np.zeros(100))


def test_r4_scaled_bins_rescale_to_a_1000_step_episode():
    bins = Bins.r4_scaled([0, 30, 60, 100, 1000], horizon=50)
    # a 50-step return of 2.0 is 40 on the 1000-step scale: class 1 ([30, 60))
    assert bins.classify(np.array([2.0]))[0] == 1
    assert bins.scale == 20.0


def test_bins_validation():
    with pytest.raises(FeedbackError, match="strictly increasing"):
        Bins((1.0, 1.0))


def test_uniform_relabel_rate_matches_p():
    rng = np.random.default_rng(0)
    ratings = np.zeros(20000, dtype=int)
    noisy = UniformRelabel(0.4).apply(ratings, 4, rng)
    # a relabel keeps the label with chance 1/4, so 0.4 * 3/4 = 0.3 change
    assert abs((noisy != 0).mean() - 0.3) < 0.015


def test_adjacent_swap_keeps_class_counts_and_only_swaps_neighbours():
    rng = np.random.default_rng(1)
    clean = np.repeat(np.arange(4), 50)
    noisy = AdjacentSwap(0.2).apply(clean, 4, rng)
    np.testing.assert_array_equal(np.bincount(noisy), np.bincount(clean))
    changed = noisy != clean
    assert changed.sum() == 2 * 40
    assert np.all(np.abs(noisy - clean)[changed] == 1)


def test_gaussian_return_noise_only_blurs_near_edges():
    seg = segments_with_returns([-100, 100] * 50)
    teacher = RatingTeacher(Bins.fixed([-1e9, 0, 1e9]), (GaussianReturnNoise(1.0),))
    np.testing.assert_array_equal(teacher.rate(seg, np.random.default_rng(0)), [0, 1] * 50)
    close = segments_with_returns([-0.01, 0.01] * 500)
    flips = teacher.rate(close, np.random.default_rng(0)) != np.array([0, 1] * 500)
    assert 0.4 < flips.mean() < 0.6


def test_rating_teacher_is_reproducible_and_serialisable(linear_segments):
    seg = linear_segments(200)
    teacher = RatingTeacher(
        Bins.equal_width(4, -40, 40), (GaussianReturnNoise(2.0), UniformRelabel(0.2))
    )
    a = teacher.rate(seg, np.random.default_rng(7))
    b = teacher_from_dict(teacher.to_dict()).rate(seg, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert (a != teacher.clean_ratings(seg)).any()


def test_dynamic_classes_switch_and_remap():
    fine = RatingTeacher(Bins.fixed([0, 10, 20, 30, 40]))  # 4 fine classes
    teacher = DynamicRatingTeacher(fine, Bins.fixed([0, 20, 40]), switch_after=4)
    rng = np.random.default_rng(0)
    seg = segments_with_returns([5, 15, 25, 35])
    first = teacher.rate(seg, rng)
    np.testing.assert_array_equal(first, [0, 1, 2, 3])
    assert teacher.switched and teacher.scale.n == 2
    np.testing.assert_array_equal(teacher.rate(seg, rng), [0, 0, 1, 1])
    np.testing.assert_array_equal(teacher.remap(first), [0, 0, 1, 1])
    again = teacher_from_dict(teacher.to_dict())
    assert again.rated == 8 and again.switched
    with pytest.raises(FeedbackError, match="not fine edges"):
        DynamicRatingTeacher(fine, Bins.fixed([0, 15, 40]))


def test_preference_oracle_equal_mistake_skip_and_myopic():
    rng = np.random.default_rng(0)
    first = segments_with_returns([0, 10, 5, -20, -20])
    second = segments_with_returns([10, 0, 5.05, -19, -30])
    labels, answered = PreferenceTeacher().label(first, second, rng)
    np.testing.assert_array_equal(labels, [1, 0, 1, 1, 0])
    assert answered.all()
    labels, _ = PreferenceTeacher(equal_threshold=0.1).label(first, second, rng)
    assert labels[2] == 0.5
    _, answered = PreferenceTeacher(skip_threshold=-15).label(first, second, rng)
    np.testing.assert_array_equal(answered, [True, True, True, False, False])

    many_a, many_b = segments_with_returns([0] * 5000), segments_with_returns([1] * 5000)
    labels, _ = PreferenceTeacher(mistake=0.1).label(many_a, many_b, rng)
    assert abs((labels == 0).mean() - 0.1) < 0.015
    labels, _ = PreferenceTeacher(beta=1.0).label(many_a, many_b, rng)
    assert abs(labels.mean() - 1 / (1 + math.exp(-1))) < 0.02

    # myopic: the second segment is better early, the first better late
    early = SegmentSet(np.zeros((1, 4, 1)), np.zeros((1, 4, 1)), np.array([[3.0, 0, 0, 0]]))
    late = SegmentSet(np.zeros((1, 4, 1)), np.zeros((1, 4, 1)), np.array([[0, 0, 0, 2.0]]))
    assert PreferenceTeacher().label(late, early, rng)[0][0] == 1
    assert PreferenceTeacher(gamma=0.5).label(late, early, rng)[0][0] == 0


def test_preference_presets_and_roundtrip():
    t = PreferenceTeacher.preset("noisy", return_scale=5.0)
    assert t.beta == 1.0 and t.return_scale == 5.0
    assert teacher_from_dict(t.to_dict()) == t
    assert teacher_from_dict(PreferenceTeacher().to_dict()) == PreferenceTeacher()
    with pytest.raises(FeedbackError, match="unknown preference teacher 'lazy'"):
        PreferenceTeacher.preset("lazy")


def test_teacher_source_answers_what_was_requested():
    from ratingrl.feedback.sources import RatingSource, TeacherSource

    teacher = RatingTeacher(Bins.fixed([-100, 0, 100]))
    source = TeacherSource(teacher, np.random.default_rng(0))
    assert isinstance(source, RatingSource)
    assert source.collect() is None
    source.request(segments_with_returns([-5, 5]))
    source.request(segments_with_returns([7]))
    rated = source.collect(timeout=10)
    np.testing.assert_array_equal(rated.ratings, [0, 1, 1])
    assert rated.source["type"] == "rating" and rated.scale.n == 2
    assert source.collect() is None
