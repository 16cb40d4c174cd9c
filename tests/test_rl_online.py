"""Online feedback beyond plain ratings: preference queries (bt), ratings and pairs in one run,
a rating scale that changes mid-run, and what the run logs (CSV columns, TensorBoard, learned
return of training episodes)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import Logger

from ratingrl.feedback.io import load_preferences, load_rated, read_metadata
from ratingrl.feedback.preference_source import PreferenceTeacherSource, SegmentPairs
from ratingrl.feedback.queries import UniformSelector
from ratingrl.feedback.segments import (
    FeedbackError,
    PreferencePairs,
    RatedSegments,
    RatingScale,
    SegmentSet,
)
from ratingrl.feedback.sources import TeacherSource, retracted
from ratingrl.feedback.teachers import Bins, DynamicRatingTeacher, PreferenceTeacher, RatingTeacher
from ratingrl.rewards.metrics import pair_accuracy
from ratingrl.rl import train as train_module
from ratingrl.rl.online import (
    FeedbackChannel,
    FeedbackStore,
    OnlineFeedback,
    Schedule,
    remap_hook,
)
from ratingrl.rl.train import RunError, train

from .test_rl_train import TINY as TRAIN_TINY

torch.set_num_threads(1)

# The training tests' tiny SAC run, asking for preferences, with a buffer that does not wrap.
TINY = replace(TRAIN_TINY, method="bt", buffer_size=1000, checkpoint_every=300)
# Ratings and preference pairs in one run: 20 ratings and 15 pairs over two rounds (8 + 7).
MIXED = replace(TINY, method="rbrl", preference_budget=15)


def _segments(n: int, h: int = 5, seed: int = 0) -> SegmentSet:
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(-1, 0, size=(n, h)).astype(np.float32)
    return SegmentSet(rng.normal(size=(n, h, 3)), rng.normal(size=(n, h, 1)), rewards)


def _columns(path) -> dict[str, list[str]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows if r[k] != ""] for k in rows[0]}


def test_online_bt_asks_for_preferences_and_logs_everything(tmp_path):
    run = tmp_path / "bt"
    summary = train(TINY, run, progress=False)
    assert summary["labels_used"] == 20 and summary["env_steps"] == 600
    assert summary["learned_return_final"] is not None
    assert read_metadata(run / "feedback.parquet")["kind"] == "preferences"
    pairs = load_preferences(run / "feedback.parquet")
    assert len(pairs) == 20 and pairs.source["rounds_done"] == 2
    # the oracle preference teacher: label 1 exactly when the second segment's return is higher
    expected = (pairs.second.true_returns > pairs.first.true_returns).astype(np.float32)
    np.testing.assert_array_equal(pairs.labels, expected)
    cols = _columns(run / "progress.csv")
    for name in ("eval/true_return", "eval/learned_return", "feedback/labels"):
        assert cols[name], f"{name} is never logged"
    assert float(cols["feedback/labels"][-1]) == 20
    # learned return of finished training episodes, beside SB3's env-reward return
    assert cols["rollout/ep_learned_rew_mean"] and cols["rollout/ep_rew_mean"]
    assert list((run / "tb").glob("events.out.tfevents.*")), "no TensorBoard events written"


def test_online_bt_resume_reloads_the_pairs(tmp_path):
    """A resumed bt run keeps the stored pairs and asks only for the rounds still due."""
    run = tmp_path / "bt"
    first = replace(TINY, total_steps=300, budget=10, schedule_steps=(250,), schedule="explicit")
    train(first, run, progress=False)
    stored = load_preferences(run / "feedback.parquet")
    assert len(stored) == 10
    store = FeedbackStore.load(run / "feedback.parquet")
    assert isinstance(store.data, PreferencePairs) and store.rounds_done == 1
    # same run folder, resumed: config.json must match, so resume the finished run itself
    summary = train(first, run, resume=True, progress=False)
    assert summary["labels_used"] == 10
    np.testing.assert_array_equal(load_preferences(run / "feedback.parquet").labels, stored.labels)


def test_preference_source_drops_skipped_queries():
    segs = _segments(8)
    pairs = SegmentPairs(segs.subset(range(4)), segs.subset(range(4, 8)))
    source = PreferenceTeacherSource(
        PreferenceTeacher(skip_threshold=-2.0), np.random.default_rng(0)
    )
    assert source.collect() is None
    source.request(pairs)
    got = source.collect()
    returns = np.maximum(pairs.first.true_returns, pairs.second.true_returns)
    answered = returns >= -2.0
    assert source.skipped == int((~answered).sum())
    assert (0 if got is None else len(got)) == int(answered.sum())
    assert source.collect() is None  # nothing is handed out twice


def _dynamic() -> DynamicRatingTeacher:
    fine = RatingTeacher(Bins.equal_width(4, -5.0, 0.0))
    coarse = Bins((fine.bins.edges[1],))
    return DynamicRatingTeacher(fine, coarse, switch_after=6)


def test_store_remaps_stored_ratings_when_the_scale_coarsens(tmp_path):
    teacher = _dynamic()
    source = TeacherSource(teacher, np.random.default_rng(0))
    store = FeedbackStore(tmp_path / "f.parquet", remap=remap_hook(source))
    segs = _segments(12, seed=1)
    source.request(segs.subset(range(6)))
    store.add(source.collect())
    fine = store.data.ratings.copy()
    assert store.data.scale.n == 4
    source.request(segs.subset(range(6, 12)))  # the teacher switched after 6 ratings
    store.add(source.collect())
    assert store.data.scale.n == 2 and len(store) == 12 and store.remapped == 6
    np.testing.assert_array_equal(store.data.ratings[:6], teacher.remap(fine))
    coarse = teacher.coarse_bins.classify(segs.true_returns)
    np.testing.assert_array_equal(store.data.ratings, coarse)  # remap == rating coarsely
    assert load_rated(tmp_path / "f.parquet").scale.n == 2
    # without a remap there is no sound way to mix scales: a clear error, not a silent mix
    bare = FeedbackStore(tmp_path / "g.parquet")
    bare.add(RatedSegments(segs.subset(range(2)), np.array([0, 3]), teacher.fine.scale))
    with pytest.raises(FeedbackError, match="no remap"):
        bare.add(RatedSegments(segs.subset(range(2)), np.array([0, 1]), teacher.scale))


def test_online_run_with_dynamic_classes_remaps(tmp_path):
    config = replace(TINY, method="r4", n_classes=4, coarse_classes=2, switch_after=10)
    summary = train(config, tmp_path / "dyn", progress=False)
    assert summary["labels_used"] == 20
    data = load_rated(tmp_path / "dyn" / "feedback.parquet")
    assert data.scale.n == 2 and data.source["remapped_from_classes"] == 4
    coarse = Bins.equal_width(2, -320.0, 0.0)  # noise-free teacher: remapped == coarse rating
    np.testing.assert_array_equal(data.ratings, coarse.classify(data.segments.true_returns))
    with pytest.raises(RunError, match="coarse-classes"):
        train(replace(config, coarse_classes=3), tmp_path / "bad", progress=False)
    with pytest.raises(RunError, match="preference pairs"):
        train(replace(TINY, selector="stratified"), tmp_path / "bad", progress=False)


def _spy_on_train_mixed(monkeypatch) -> list[tuple[int, int, float, bool]]:
    """Record (ratings, pairs, preference weight, warm-started) of each mixed reward update."""
    calls: list[tuple[int, int, float, bool]] = []
    real = train_module.train_mixed

    def spy(ratings, pairs, method, config, *, preference_weight, model=None, **kwargs):
        calls.append((len(ratings), len(pairs), preference_weight, model is not None))
        return real(
            ratings, pairs, method, config, preference_weight=preference_weight, model=model
        )

    monkeypatch.setattr(train_module, "train_mixed", spy)
    return calls


def test_pair_budget_is_shared_over_the_rating_rounds():
    schedule = Schedule.interval(20, 10, 250)
    shared = schedule.share(15)
    assert shared.steps == schedule.steps and shared.counts == (8, 7)
    assert Schedule.explicit((1, 2, 3), 3).share(5).counts == (2, 2, 1)


def test_online_mixed_run_learns_from_ratings_and_pairs(tmp_path, monkeypatch):
    calls = _spy_on_train_mixed(monkeypatch)
    run = tmp_path / "mixed"
    summary = train(replace(MIXED, preference_weight=0.5), run, progress=False)
    assert (summary["labels_used"], summary["ratings_used"], summary["pairs_used"]) == (35, 20, 15)
    ratings = load_rated(run / "feedback.parquet")
    pairs = load_preferences(run / "feedback_pairs.parquet")
    assert len(ratings) == 20 and ratings.source["rounds_done"] == 2
    assert len(pairs) == 15 and pairs.source["rounds_done"] == 2
    assert pairs.source["env_id"] == "Pendulum-v1"
    # the noise-free B-Pref teacher: label 1 exactly when the second segment's return is higher
    expected = (pairs.second.true_returns > pairs.first.true_returns).astype(np.float32)
    np.testing.assert_array_equal(pairs.labels, expected)
    # the pairs are trained on: the last update saw every rating and every pair, warm-started
    assert calls and calls[-1] == (20, 15, 0.5, True)
    assert {c[1] for c in calls} <= {8, 15}  # round 1 brings 8 pairs, round 2 the other 7
    cols = _columns(run / "progress.csv")
    assert float(cols["reward_model/pairs"][-1]) == 15
    assert float(cols["reward_model/ratings"][-1]) == 20
    assert float(cols["feedback/labels"][-1]) == 35
    assert float(cols["feedback/labels_pairs"][-1]) == 15
    assert float(cols["feedback/labels_ratings"][-1]) == 20
    assert cols["reward_model/relabelled"] and summary["learned_return_final"] is not None


def test_mixed_update_learns_from_the_pairs():
    """Same ratings, same seed, pairs with true vs flipped answers: the pairs steer the reward."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(60, 5, 3)).astype(np.float32)
    segs = SegmentSet(obs, rng.normal(size=(60, 5, 1)), obs[:, :, 0].copy())  # reward: obs[0]
    rated = segs.subset(range(20))
    ratings = RatingTeacher(Bins.quantile(2, rated.true_returns)).rate_dataset(rated, rng)
    a, b = segs.subset(range(20, 40)), segs.subset(range(40, 60))
    labels, _ = PreferenceTeacher().label(a, b, rng)
    update = train_module._updater(replace(MIXED, reward_epochs=60))
    right, row = update([ratings, PreferencePairs(a, b, labels)], None)
    wrong, _ = update([ratings, PreferencePairs(a, b, 1 - labels)], None)
    assert (row["ratings"], row["pairs"]) == (20, 20)

    def agreement(model) -> float:
        first, second = (model.predict_returns(s.obs, s.acts).mean(0) for s in (a, b))
        return pair_accuracy(first, second, labels)

    # each model sides with the answers it was given (0.95 vs 0.25 when every update trains all
    # epochs; 0.7 vs 0.4 when a 10% split picks the epoch)
    assert agreement(right) - agreement(wrong) >= 0.2
    # ratings alone (a channel with nothing learnable yet is None): no pair columns in the log
    _, alone = update([ratings, None], None)
    assert "pairs" not in alone


class _Crash(RuntimeError):
    """Stands in for the process dying."""


def test_mixed_run_stopped_mid_round_resumes_with_every_label(tmp_path, monkeypatch):
    """Stopped after round 2's ratings were stored but before its pairs: the resumed run keeps
    every label of both kinds, asks only for the missing pairs and ends with both budgets."""
    real = train_module.PreferenceTeacherSource

    class CrashingOnRound2(real):
        def collect(self, timeout: float = 0.0):
            if self._pending:
                self.rounds = getattr(self, "rounds", 0) + 1
                if self.rounds == 2:
                    raise _Crash("the process died while round 2's pairs were being answered")
            return super().collect(timeout)

    run = tmp_path / "mixed"
    monkeypatch.setattr(train_module, "PreferenceTeacherSource", CrashingOnRound2)
    with pytest.raises(_Crash):
        train(MIXED, run, progress=False)
    monkeypatch.setattr(train_module, "PreferenceTeacherSource", real)
    ratings = load_rated(run / "feedback.parquet")
    pairs = load_preferences(run / "feedback_pairs.parquet")
    assert (len(ratings), ratings.source["rounds_done"]) == (20, 2)  # round 2's ratings: stored
    assert (len(pairs), pairs.source["rounds_done"]) == (8, 1)  # round 2's pairs: never answered
    assert not (run / "summary.json").exists()

    summary = train(MIXED, run, resume=True, progress=False)
    assert (summary["labels_used"], summary["ratings_used"], summary["pairs_used"]) == (35, 20, 15)
    after_r = load_rated(run / "feedback.parquet")
    after_p = load_preferences(run / "feedback_pairs.parquet")
    assert after_p.source["rounds_done"] == 2 and after_r.source["rounds_done"] == 2
    np.testing.assert_array_equal(after_r.ratings, ratings.ratings)  # no rating asked again
    np.testing.assert_array_equal(after_r.segments.obs, ratings.segments.obs)
    np.testing.assert_array_equal(after_p.labels[:8], pairs.labels)
    np.testing.assert_array_equal(after_p.first.obs[:8], pairs.first.obs)
    np.testing.assert_array_equal(after_p.second.obs[:8], pairs.second.obs)
    assert summary["env_steps"] == 600


def _bad(tmp_path, **changes):
    return lambda: train(replace(MIXED, **changes), tmp_path / "bad", progress=False)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "bt"}, r"preference_budget=15 .*method 'bt' learns from pairs alone"),
        ({"mode": "offline"}, r"preference_budget=15 .*online run; mode 'offline'"),
        ({"method": "oracle"}, r"preference_budget=15 .*method 'oracle'"),
        ({"preference_budget": 1}, r"preference_budget=1 .*each of the 2 feedback rounds"),
        ({"preference_budget": -3}, r"preference_budget=-3 .*must be >= 0"),
    ],
)
def test_bad_preference_budget_fails_before_training(tmp_path, changes, message):
    with pytest.raises(RunError, match=message):
        _bad(tmp_path, **changes)()
    assert not (tmp_path / "bad").exists()  # nothing was started


def test_preference_budget_needs_the_simulated_teacher(tmp_path):
    rater = TeacherSource(RatingTeacher(Bins.equal_width(4, -320.0, 0.0)))
    with pytest.raises(RunError, match="preference_budget=15 .*simulated teacher"):
        train(MIXED, tmp_path / "bad", source=rater, progress=False)
    assert not (tmp_path / "bad").exists()


def _rated(ratings: list[int], ids: list[str] | None, seed: int = 0) -> RatedSegments:
    return RatedSegments(
        _segments(len(ratings), seed=seed), np.array(ratings), RatingScale(3), {}, None, ids
    )


def test_store_retracts_labels_by_id_and_rewrites_its_file(tmp_path):
    path = tmp_path / "f.parquet"
    store = FeedbackStore(path, meta={"env_id": "X"}, rounds_done=2)
    store.add(_rated([0, 1, 2], ["a", "b", "c"]))
    store.add(_rated([2, 0], None, seed=1))  # a teacher's labels: no ids, never retracted
    assert store.data.label_id.tolist() == ["a", "b", "c", None, None]
    assert store.retract({"b", "never-collected"}) == 1
    assert len(store) == 4 and store.retracted == 1
    on_disk = load_rated(path)
    assert on_disk.label_id.tolist() == ["a", "c", None, None]
    np.testing.assert_array_equal(on_disk.ratings, [0, 2, 2, 0])
    np.testing.assert_array_equal(on_disk.segments.obs[:2], _segments(3).obs[[0, 2]])
    assert on_disk.source["labels_retracted"] == 1 and on_disk.source["rounds_done"] == 2
    before = path.read_bytes()
    assert store.retract({"b", "zzz"}) == 0 and store.retract(set()) == 0  # nothing held: no-op
    assert path.read_bytes() == before
    # what a resumed run sees: the withdrawn label stays gone and is still counted
    resumed = FeedbackStore.load(path)
    assert (len(resumed), resumed.retracted, resumed.rounds_done) == (4, 1, 2)
    assert resumed.retract({"a", "c"}) == 2 and resumed.data.label_id.tolist() == [None, None]
    assert FeedbackStore.load(path).retracted == 3
    # stores that cannot hold ids ignore retractions
    assert FeedbackStore(tmp_path / "none.parquet").retract({"a"}) == 0
    pairs = FeedbackStore(tmp_path / "p.parquet")
    segs = _segments(4)
    pairs.add(PreferencePairs(segs.subset([0, 1]), segs.subset([2, 3]), np.array([0.0, 1.0])))
    assert pairs.retract({"0", "1"}) == 0 and len(pairs) == 2


def test_store_emptied_by_retractions_survives_a_reload(tmp_path):
    store = FeedbackStore(tmp_path / "f.parquet")
    store.add(_rated([0, 1], ["a", "b"]))
    assert store.retract({"a", "b"}) == 2 and len(store) == 0
    resumed = FeedbackStore.load(tmp_path / "f.parquet")
    assert len(resumed) == 0 and resumed.retracted == 2
    resumed.add(_rated([1], ["c"]))  # new labels join the empty set
    assert load_rated(tmp_path / "f.parquet").label_id.tolist() == ["c"]


@dataclass
class _Person:
    """A rating source whose answers and withdrawals the test decides."""

    answers: list[RatedSegments] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)

    @property
    def scale(self) -> RatingScale:
        return RatingScale(3)

    def request(self, segments: SegmentSet) -> None:
        pass

    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        return self.answers.pop(0) if self.answers else None

    def retracted(self) -> list[str]:
        out, self.withdrawn = self.withdrawn, []
        return out


def _loop(store: FeedbackStore, person: _Person, updates: list, model=None) -> OnlineFeedback:
    """The online loop around ``person`` with a recording updater; nothing else runs."""

    def updater(labels, current):
        (data,) = labels
        updates.append(list(data.label_id))
        return SimpleNamespace(predict_rewards=None), {"loss": 0.0}

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


def test_loop_retrains_the_reward_without_a_withdrawn_label(tmp_path):
    person, updates = _Person(), []
    store = FeedbackStore(tmp_path / "f.parquet")
    loop = _loop(store, person, updates)
    person.answers.append(_rated([0, 1, 2], ["a", "b", "c"]))
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
    person.withdrawn, person.answers = ["a"], [_rated([1], ["d"], seed=2)]
    loop.poll()
    assert updates[-1] == ["c", "d"] and loop.labels == 2 and loop.retracted == 2
    loop.poll()
    assert len(updates) == 3  # nothing changed since: no update


def test_retractions_stored_before_a_crash_retrain_on_resume(tmp_path):
    """A label withdrawn and removed from the file, then the process died before the reward
    was updated: the resumed loop (model and counts from the older checkpoint) retrains."""
    person, updates = _Person(), []
    store = FeedbackStore(tmp_path / "f.parquet")
    store.add(_rated([0, 1, 2], ["a", "b", "c"]))
    store.retract({"c"})
    resumed = FeedbackStore.load(tmp_path / "f.parquet")
    loop = _loop(resumed, person, updates, model=SimpleNamespace(predict_rewards=None))
    loop.trained_on, loop.trained_retracted = 3, 0  # the checkpoint's, from before the undo
    assert loop.stale
    loop.update_reward()
    assert updates == [["a", "b"]] and not loop.stale


def test_simulated_teachers_retract_nothing():
    teacher = TeacherSource(RatingTeacher(Bins.equal_width(4, -5.0, 0.0)))
    assert retracted(teacher) == frozenset()
    assert retracted(_Person(withdrawn=["7"])) == frozenset({"7"})
