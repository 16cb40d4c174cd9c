"""The online loop on its own (no simulator, no policy): labels a person hands in or takes back
are stored, the reward is retrained when the labels change and only then, and the loop's state
says what the current reward learned from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from stable_baselines3.common.logger import Logger

from ratingrl.feedback.io import load_rated
from ratingrl.feedback.queries import UniformSelector
from ratingrl.feedback.schedules import Schedule, ScheduleError
from ratingrl.feedback.store import FeedbackChannel, FeedbackStore
from ratingrl.rl.online import OnlineFeedback


def _reward() -> SimpleNamespace:
    """A stand-in reward model: what the loop calls on one (a constant reward)."""
    return SimpleNamespace(
        predict_rewards=None, predict_returns=lambda obs, acts: np.zeros((1, len(obs)))
    )


def _counts(loop: OnlineFeedback) -> dict:
    state = loop.state_dict()
    return {k: state[k] for k in ("trained_on", "trained_retracted")}


def _loop(store: FeedbackStore, person, updates: list, model=None) -> OnlineFeedback:
    """The online loop around ``person`` with a recording updater; nothing else runs."""

    def updater(labels, current):
        (data,) = labels
        updates.append(list(data.label_id))
        return _reward(), {"loss": 0.0}

    channel = FeedbackChannel(person, UniformSelector(), store, (1,), "ratings")
    loop = OnlineFeedback(
        schedule=Schedule.explicit((10**9,), 1),  # no round is ever due: the test feeds labels
        channels=[channel],
        updater=updater,
        recorder=None,
        reward_env=SimpleNamespace(reward_fn=None),
        horizon=5,
        rng=np.random.default_rng(0),
        model=model,
    )
    loop.model = SimpleNamespace(logger=Logger(None, []))  # SB3's algorithm: only its logger
    return loop


def test_loop_retrains_the_reward_without_a_withdrawn_label(tmp_path, person, make_rated):
    updates = []
    store = FeedbackStore(tmp_path / "f.parquet")
    loop = _loop(store, person, updates)
    person.answers.append(make_rated([0, 1, 2], ["a", "b", "c"]))
    loop.poll()
    assert updates == [["a", "b", "c"]]
    person.withdrawn = ["b"]
    loop.poll()  # no new label, one withdrawn: the reward is trained again on what remains
    assert updates[-1] == ["a", "c"] and load_rated(store.path).label_id.tolist() == ["a", "c"]
    logged = loop.logger.name_to_value
    assert logged["feedback/retracted"] == 1 and logged["feedback/labels"] == 2
    person.withdrawn = ["x"]  # undone before it was ever collected: nothing to do
    loop.poll()
    assert len(updates) == 2 and store.retracted == 1
    # one out and one in at the same poll: the count is as before, the labels are not
    person.withdrawn, person.answers = ["a"], [make_rated([1], ["d"], seed=2)]
    loop.poll()
    assert updates[-1] == ["c", "d"] and loop.labels == 2 and loop.retracted == 2
    loop.poll()
    assert len(updates) == 3  # nothing changed since: no update


def test_one_rating_class_waits_for_a_second(tmp_path, person, make_rated):
    updates = []
    loop = _loop(FeedbackStore(tmp_path / "f.parquet"), person, updates)
    person.answers.append(make_rated([1, 1], ["a", "b"]))
    loop.poll()
    assert updates == [] and loop.logger.name_to_value["feedback/waiting_for_second_class"] == 1
    loop.poll()
    assert updates == [] and not loop.stale  # not retried every step
    person.answers.append(make_rated([2], ["c"]))
    loop.poll()
    assert updates == [["a", "b", "c"]]


def test_retractions_stored_before_a_crash_retrain_on_resume(tmp_path, person, make_rated):
    """A label withdrawn and removed from the file, then the process died before the reward
    was updated: the resumed loop (model and counts from the older checkpoint) retrains."""
    updates = []
    store = FeedbackStore(tmp_path / "f.parquet")
    store.add(make_rated([0, 1, 2], ["a", "b", "c"]))
    store.retract({"c"})
    resumed = FeedbackStore.load(tmp_path / "f.parquet")
    loop = _loop(resumed, person, updates, model=_reward())
    loop.load_state_dict({"trained_on": 3, "trained_retracted": 0})  # from before the undo
    assert loop.stale
    loop.update_reward()
    assert updates == [["a", "b"]] and not loop.stale
    assert _counts(loop) == {"trained_on": 2, "trained_retracted": 1}
    assert loop.state_dict()["seen"] == [2]  # the next update's new labels start after these


def test_loop_state_without_a_reward_model_starts_from_nothing(tmp_path, person, make_rated):
    """A checkpoint taken before the first update has no reward: every stored label is new."""
    store = FeedbackStore(tmp_path / "f.parquet")
    store.add(make_rated([0, 1], ["a", "b"]))
    updates = []
    loop = _loop(store, person, updates)
    loop.load_state_dict({"trained_on": 2, "trained_retracted": 0})
    assert _counts(loop) == {"trained_on": 0, "trained_retracted": 0} and loop.stale
    loop.update_reward()
    assert updates == [["a", "b"]]


def test_channels_must_fit_the_schedule(tmp_path, person):
    store = FeedbackStore(tmp_path / "f.parquet")
    kwargs = dict(
        updater=None,
        recorder=None,
        reward_env=None,
        horizon=5,
        rng=np.random.default_rng(0),
    )
    schedule = Schedule.explicit((10, 20), 4)
    short = FeedbackChannel(person, UniformSelector(), store, (2,), "ratings")
    with pytest.raises(ScheduleError, match="asks .*2 rounds"):
        OnlineFeedback(schedule=schedule, channels=[short], **kwargs)
    twin = FeedbackChannel(person, UniformSelector(), store, (2, 2), "ratings")
    with pytest.raises(ScheduleError, match="distinct names"):
        OnlineFeedback(schedule=schedule, channels=[twin, twin], **kwargs)
    with pytest.raises(ScheduleError, match="at least one"):
        OnlineFeedback(schedule=schedule, channels=[], **kwargs)
