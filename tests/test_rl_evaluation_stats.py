"""Every evaluation reports its episodes and a 95% interval of their mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ratingrl.rl.evaluation import return_stats


def test_the_interval_is_the_t_interval_of_the_mean():
    out = return_stats(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    # mean 3, sample std sqrt(2.5), t(0.975, 4) = 2.7764451...
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert out["mean"] == 3.0
    assert out["ci95"] == pytest.approx([3.0 - half, 3.0 + half], abs=1e-9)
    assert out["std"] == pytest.approx(math.sqrt(2.0))  # the population std, as before
    assert out["episodes"] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_more_episodes_of_the_same_spread_narrow_the_interval():
    few = return_stats(np.array([100.0, 600.0] * 3))
    many = return_stats(np.array([100.0, 600.0] * 10))
    assert few["mean"] == many["mean"] == 350.0
    assert np.diff(many["ci95"])[0] < 0.6 * np.diff(few["ci95"])[0]


def test_one_episode_has_no_interval():
    out = return_stats(np.array([7.0]))
    assert out["mean"] == 7.0 and out["ci95"] is None
