"""The online teachers: equal-width bins by default, R4's scaled boundaries on request, and the
preference teacher's answer on ties."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.feedback.preference_source import SegmentPairs
from ratingrl.feedback.segments import SegmentSet
from ratingrl.rl.builders import make_teacher_source
from ratingrl.rl.config import RunConfig, RunError

WALKER = (0, 30, 60, 100, 200, 300, 400, 500, 600, 800, 1000)


def _rate(config: RunConfig, returns: list[float]) -> np.ndarray:
    return make_teacher_source(config).teacher.bins.classify(np.asarray(returns))


def test_equal_width_bins_put_an_early_sparse_policy_in_one_class():
    config = RunConfig(env_id="dmc/finger-spin", method="r4")
    assert set(_rate(config, [0.0, 2.0, 6.0])) == {0}


def test_r4_boundaries_scale_the_segment_return_to_an_episode():
    config = RunConfig(env_id="dmc/finger-spin", method="r4", rating_boundaries=WALKER)
    source = make_teacher_source(config)
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


def _pair_labels(config: RunConfig, first: list[float], second: list[float]) -> list[float]:
    """The online preference teacher's answers for segments whose true rewards are given."""

    def segments(rewards: list[float]) -> SegmentSet:
        n = len(rewards)
        per_step = np.repeat(np.asarray(rewards, dtype=np.float32)[:, None] / 5, 5, axis=1)
        return SegmentSet(np.zeros((n, 5, 2)), np.zeros((n, 5, 1)), per_step)

    source = make_teacher_source(config)
    source.request(SegmentPairs(segments(first), segments(second)))
    return source.collect().labels.tolist()


def test_bpref_oracle_credits_an_exact_tie_to_the_first_segment():
    config = RunConfig(env_id="dmc/finger-spin", method="bt")
    assert _pair_labels(config, [0.0, 1.0, 2.0], [0.0, 2.0, 1.0]) == [0.0, 1.0, 0.0]


def test_equal_threshold_answers_ties_as_equally_preferable():
    config = RunConfig(env_id="dmc/finger-spin", method="bt", preference_equal_threshold=1e-6)
    assert _pair_labels(config, [0.0, 1.0, 2.0], [0.0, 2.0, 1.0]) == [0.5, 1.0, 0.0]
    wide = RunConfig(env_id="dmc/finger-spin", method="bt", preference_equal_threshold=1.5)
    assert _pair_labels(wide, [0.0, 1.0, 4.0], [0.0, 2.0, 1.0]) == [0.5, 0.5, 0.0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "bt", "preference_equal_threshold": -1.0}, "must be >= 0"),
        ({"method": "r4", "preference_equal_threshold": 0.1}, "asks for no pairs"),
        ({"method": "bt", "mode": "offline", "preference_equal_threshold": 0.1}, "no pairs"),
    ],
)
def test_equal_threshold_without_an_online_preference_teacher_is_refused(changes, message):
    with pytest.raises(RunError, match=message):
        RunConfig(env_id="dmc/finger-spin", **changes).validate()
