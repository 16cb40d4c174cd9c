"""The online teacher's bins: equal-width by default, R4's scaled boundaries on request."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.rl.train import RunConfig, RunError, _teacher_source

WALKER = (0, 30, 60, 100, 200, 300, 400, 500, 600, 800, 1000)


def _rate(config: RunConfig, returns: list[float]) -> np.ndarray:
    return _teacher_source(config).teacher.bins.classify(np.asarray(returns))


def test_equal_width_bins_put_an_early_sparse_policy_in_one_class():
    config = RunConfig(env_id="dmc/finger-spin", method="r4")
    assert set(_rate(config, [0.0, 2.0, 6.0])) == {0}


def test_r4_boundaries_scale_the_segment_return_to_an_episode():
    config = RunConfig(env_id="dmc/finger-spin", method="r4", rating_boundaries=WALKER)
    source = _teacher_source(config)
    assert source.scale.n == 10
    # H = 50: x = G * 1000 / 50 = 20 G, so G = 0, 2, 6 -> x = 0, 40, 120 -> classes 0, 1, 3
    assert _rate(config, [0.0, 2.0, 6.0]).tolist() == [0, 1, 3]
    assert _rate(config, [50.0, 80.0]).tolist() == [9, 9]  # at or above the top edge: top class


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rating_boundaries": (0, 5, 3)}, "strictly increasing"),
        ({"rating_boundaries": (0, 5)}, "at least 3"),
        ({"rating_boundaries": WALKER, "coarse_classes": 2}, "coarse-classes"),
    ],
)
def test_bad_boundaries_are_named(changes, message):
    with pytest.raises(RunError, match=message):
        RunConfig(env_id="dmc/finger-spin", method="r4", **changes).validate()
