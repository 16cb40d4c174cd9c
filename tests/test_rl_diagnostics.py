"""The reward's agreement with the true return on the policy's own segments, per update."""

from __future__ import annotations

import math

import numpy as np

from ratingrl.feedback.segments import RatedSegments, RatingScale, SegmentSet
from ratingrl.rl.diagnostics import kendall_tau, label_fidelity


class Fixed:
    """A stand-in reward whose segment returns are ``scale * true return`` for every member."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def predict_returns(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        true = obs[:, :, 0].sum(axis=1)  # the segments below carry their reward in obs[..., 0]
        return np.stack([self.scale * true, self.scale * true])


def _rated(ratings: list[int], with_truth: bool = True) -> RatedSegments:
    steps = np.arange(1.0, 1.0 + len(ratings))[:, None] * np.ones((1, 4))  # returns 4, 8, 12 ...
    obs = np.stack([steps, np.zeros_like(steps)], axis=-1)
    segments = SegmentSet(obs, np.zeros((len(ratings), 4, 1)), steps if with_truth else None)
    return RatedSegments(segments, np.array(ratings), RatingScale(3))


def test_figures_against_exact_answers():
    data = _rated([0, 0, 1, 1, 2, 2])
    row = label_fidelity(Fixed(-1.0), Fixed(2.0), [None, data], [0, 4])
    # the new reward orders every segment as the true return does; the old one had the two
    # new segments backwards
    assert math.isclose(row["tau_all"], 1.0)
    assert math.isclose(row["tau_new_before"], -1.0)
    # ratings vs distinct returns: 12 of 15 pairs concordant, 3 tied in the ratings only
    assert math.isclose(row["tau_labels"], 12 / math.sqrt(15 * 12))
    assert row["classes_used"] == 3 and row["classes_new"] == 1


def test_the_first_update_has_no_earlier_reward_and_people_have_no_truth():
    row = label_fidelity(None, Fixed(1.0), [_rated([0, 1, 2])], [0])
    assert row["tau_new_before"] is None and math.isclose(row["tau_all"], 1.0)
    assert label_fidelity(None, Fixed(1.0), [_rated([0, 1, 2], with_truth=False)], [0]) == {}


def test_tau_is_undefined_for_constant_scores():
    assert kendall_tau(np.ones(4), np.arange(4.0)) is None
    assert kendall_tau(np.array([1.0]), np.array([2.0])) is None
