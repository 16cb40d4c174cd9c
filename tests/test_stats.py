"""Statistics across seeds and tasks: exact answers on small arrays, intervals that cover the
truth, reproducible with a seed, and the same intervals as rliable's own library."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.experiments import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([1, 2, 3, 100]) == pytest.approx(2.5)  # the outlier is trimmed
    assert stats.iqm(np.arange(12).reshape(3, 4)) == pytest.approx(5.5)  # pooled over tasks


def test_iqm_interval_covers_the_true_mean_and_is_reproducible():
    rng = np.random.default_rng(3)
    scores = {"walker": rng.normal(0.8, 0.1, 10), "cheetah": rng.normal(0.8, 0.1, 10)}
    interval = stats.iqm_interval(scores, reps=5000, seed=1)
    assert interval.low < 0.8 < interval.high
    assert interval.low < interval.point < interval.high
    assert (interval.runs, interval.tasks) == (20, 2)
    assert stats.iqm_interval(scores, reps=5000, seed=1) == interval  # same seed, same digits
    assert stats.iqm_interval(scores, reps=5000, seed=2) != interval
    wide = stats.iqm_interval({k: v[:3] for k, v in scores.items()}, reps=5000, seed=1)
    assert wide.high - wide.low > interval.high - interval.low  # fewer seeds, less sure


def test_the_bootstrap_is_stratified_by_task():
    """Runs are resampled within their task: a task of one run keeps its weight in every
    resample, so constant tasks give a zero-width interval (a pooled bootstrap would not)."""
    interval = stats.mean_interval({"a": [0.0, 0.0, 0.0], "b": [10.0]}, reps=2000, seed=0)
    assert (interval.point, interval.low, interval.high) == (5.0, 5.0, 5.0)
    assert stats.mean_interval({}, reps=10).text() == "-"


def test_probability_of_improvement_counts_ties_as_half():
    poi = stats.probability_of_improvement
    assert poi({"t": [3.0, 4.0]}, {"t": [1.0, 2.0]}, reps=500).point == 1.0
    assert poi({"t": [1.0, 2.0]}, {"t": [1.0, 2.0]}, reps=500).point == 0.5
    assert poi({"t": [1.0, 3.0]}, {"t": [2.0]}, reps=500).point == 0.5
    assert poi({"t": [1.0]}, {"t": [1.0]}, reps=500).point == 0.5
    # averaged over the tasks both arms ran; a task only one ran is left out
    both = poi({"a": [2.0], "b": [0.0], "c": [9.0]}, {"a": [1.0], "b": [1.0]}, reps=500)
    assert (both.point, both.tasks) == (0.5, 2)
    assert np.isnan(poi({"a": [1.0]}, {"b": [1.0]}).point)


def test_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    profile, low, high = stats.performance_profile(
        {"a": [0.2, 0.6, 1.0, 1.4], "b": [2.0, 2.0]}, [0.5, 1.0, 3.0], reps=2000, seed=0
    )
    # task a: 3/4 above 0.5, 1/4 above 1.0 (strictly), none above 3; task b: 1, 1, 0
    np.testing.assert_allclose(profile, [(0.75 + 1) / 2, (0.25 + 1) / 2, 0.0])
    assert np.all(low <= profile) and np.all(profile <= high)
    assert high[2] == 0.0


def test_curve_band_averages_the_seeds_that_reached_each_step():
    band = stats.curve_band([([0, 10, 20], [0.0, 1.0, 2.0]), ([0, 10], [2.0, 3.0])], reps=500)
    np.testing.assert_array_equal(band.steps, [0, 10, 20])
    np.testing.assert_allclose(band.mean, [1.0, 2.0, 2.0])
    np.testing.assert_array_equal(band.runs, [2, 2, 1])
    assert band.low[2] == band.high[2] == 2.0  # one seed: no spread to bootstrap
    assert band.low[1] >= 1.0 and band.high[1] <= 3.0


# Fifteen runs (5 seeds x 3 tasks) and the answers of rliable 1.2.0's own library on them
# (get_interval_estimates with aggregate_iqm, 50,000 reps; probability_of_improvement and
# create_performance_profile, 20,000 reps; NumPy's global seed 0), computed in a separate
# environment: its library needs arch < 8, which fails to import next to pandas 3.
X = [
    [0.9001845230036224, 0.9448118306262705, 0.8588793216956674],
    [0.766411224186409, 0.8317993822242417, 0.7512530167505307],
    [0.9090215403896158, 1.10103228683318, 0.8261690222173006],
    [0.8069287650270089, 0.9734763075277797, 0.9535330512240091],
    [0.9158121373496848, 0.7604297932937694, 0.895612226630509],
]
Y = [
    [0.9390606388916576, 0.5311570905429837, 0.7084768477919564],
    [0.4197554520398312, 0.5420924520430048, 0.43165299244165356],
    [0.7529817737850638, 0.5465107037112593, 0.8542528717643404],
    [0.831350217324845, 0.7626138110740092, 0.2966480578358974],
    [0.6922614208306728, 0.7902998109197856, 0.8226617972006616],
]
RLIABLE = {
    "iqm": (0.8765798610182134, 0.8231774142267472, 0.9201619743806171),
    "poi": (0.84, 0.6666666666666666, 0.9733333333333333),
    "profile": ([1.0, 0.4667, 0.0667], [1.0, 0.2667, 0.0], [1.0, 0.6667, 0.2]),
}


def test_the_same_answers_as_rliables_library():
    by_task = {t: np.array(X)[:, t] for t in range(3)}
    other = {t: np.array(Y)[:, t] for t in range(3)}
    iqm = stats.iqm_interval(by_task, reps=50_000, seed=0)
    assert iqm.point == pytest.approx(RLIABLE["iqm"][0], abs=1e-12)
    assert (iqm.low, iqm.high) == pytest.approx(RLIABLE["iqm"][1:], abs=2e-3)
    poi = stats.probability_of_improvement(by_task, other, reps=20_000, seed=0)
    assert poi.point == pytest.approx(RLIABLE["poi"][0], abs=1e-12)
    assert (poi.low, poi.high) == pytest.approx(RLIABLE["poi"][1:], abs=0.02)
    profile, low, high = stats.performance_profile(by_task, [0.7, 0.9, 1.0], reps=20_000)
    for ours, theirs in zip((profile, low, high), RLIABLE["profile"], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=0.01)
