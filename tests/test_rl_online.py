"""Online runs beyond plain ratings: preference queries (bt), ratings and pairs in one run, a
rating scale that changes mid-run, a run stopped between two kinds of feedback, and what the run
logs (CSV columns, TensorBoard, learned return of training episodes)."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from ratingrl.feedback.io import load_preferences, load_rated, read_metadata
from ratingrl.feedback.preference_source import PreferenceTeacherSource
from ratingrl.feedback.segments import PreferencePairs, SegmentSet
from ratingrl.feedback.sources import TeacherSource
from ratingrl.feedback.store import FeedbackStore
from ratingrl.feedback.teachers import Bins, PreferenceTeacher, RatingTeacher
from ratingrl.rewards.metrics import pair_accuracy
from ratingrl.rl.builders import make_preference_teacher, make_teacher_source, make_updater
from ratingrl.rl.config import RunConfig, RunError
from ratingrl.rl.run import Run
from ratingrl.rl.train import train


@pytest.fixture
def bt_config(tiny_config: RunConfig) -> RunConfig:
    """The tiny SAC run asking for preferences, with a buffer that does not wrap."""
    return replace(tiny_config, method="bt", buffer_size=1000, checkpoint_every=300)


@pytest.fixture
def mixed_config(bt_config: RunConfig) -> RunConfig:
    """Ratings and preference pairs in one run: 20 ratings and 15 pairs over two rounds
    (8 + 7 pairs)."""
    return replace(bt_config, method="rbrl", preference_budget=15)


def _columns(path) -> dict[str, list[str]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows if r[k] != ""] for k in rows[0]}


@pytest.mark.slow
def test_online_bt_asks_for_preferences_and_logs_everything(tmp_path, bt_config):
    run = tmp_path / "bt"
    summary = train(bt_config, run, progress=False)
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


def test_online_bt_resume_reloads_the_pairs(tmp_path, bt_config):
    """A resumed bt run keeps the stored pairs and asks only for the rounds still due."""
    run = tmp_path / "bt"
    first = replace(
        bt_config, total_steps=300, budget=10, schedule_steps=(250,), schedule="explicit"
    )
    train(first, run, progress=False)
    stored = load_preferences(run / "feedback.parquet")
    assert len(stored) == 10
    store = FeedbackStore.load(run / "feedback.parquet")
    assert isinstance(store.data, PreferencePairs) and store.rounds_done == 1
    # same run folder, resumed: config.json must match, so resume the finished run itself
    summary = train(first, run, resume=True, progress=False)
    assert summary["labels_used"] == 10
    np.testing.assert_array_equal(load_preferences(run / "feedback.parquet").labels, stored.labels)


@pytest.mark.slow
def test_online_run_with_dynamic_classes_remaps(tmp_path, bt_config):
    config = replace(bt_config, method="r4", n_classes=4, coarse_classes=2, switch_after=10)
    summary = train(config, tmp_path / "dyn", progress=False)
    assert summary["labels_used"] == 20
    data = load_rated(tmp_path / "dyn" / "feedback.parquet")
    assert data.scale.n == 2 and data.source["remapped_from_classes"] == 4
    coarse = Bins.equal_width(2, -320.0, 0.0)  # noise-free teacher: remapped == coarse rating
    np.testing.assert_array_equal(data.ratings, coarse.classify(data.segments.true_returns))
    with pytest.raises(RunError, match="coarse-classes"):
        train(replace(config, coarse_classes=3), tmp_path / "bad", progress=False)
    with pytest.raises(RunError, match="preference pairs"):
        train(replace(bt_config, selector="stratified"), tmp_path / "bad", progress=False)


@pytest.mark.slow
def test_online_mixed_run_learns_from_ratings_and_pairs(tmp_path, mixed_config, spy_updater):
    config = replace(mixed_config, preference_weight=0.5)
    spy = spy_updater(config)
    run = tmp_path / "mixed"
    summary = Run.create(config, run, updater=spy, progress=False).learn()
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
    mixed = [(r, p, warm) for (r, p), warm in spy.calls if r is not None and p is not None]
    sizes = [(len(r), len(p), warm) for r, p, warm in mixed]
    assert sizes and sizes[-1] == (20, 15, True)
    assert {s[1] for s in sizes} <= {8, 15}  # round 1 brings 8 pairs, round 2 the other 7
    cols = _columns(run / "progress.csv")
    assert float(cols["reward_model/pairs"][-1]) == 15
    assert float(cols["reward_model/ratings"][-1]) == 20
    assert float(cols["feedback/labels"][-1]) == 35
    assert float(cols["feedback/labels_pairs"][-1]) == 15
    assert float(cols["feedback/labels_ratings"][-1]) == 20
    assert cols["reward_model/relabelled"] and summary["learned_return_final"] is not None


def _ratings_and_pairs() -> tuple:
    """20 ratings (2 classes) and 20 pairs with the oracle's answers, of segments whose reward
    is ``obs[0]``."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(60, 5, 3)).astype(np.float32)
    segs = SegmentSet(obs, rng.normal(size=(60, 5, 1)), obs[:, :, 0].copy())
    rated = segs.subset(range(20))
    ratings = RatingTeacher(Bins.quantile(2, rated.true_returns)).rate_dataset(rated, rng)
    a, b = segs.subset(range(20, 40)), segs.subset(range(40, 60))
    labels, _ = PreferenceTeacher().label(a, b, rng)
    return ratings, PreferencePairs(a, b, labels)


@pytest.mark.slow
def test_mixed_update_learns_from_the_pairs(mixed_config):
    """Same ratings, same seed, pairs with true vs flipped answers: the pairs steer the reward.

    RbRL in the form the threshold was set with (boundaries passing gradient): with its released
    form (constant boundaries) the rating term holds the reward more firmly and the gap is
    smaller, 0.34 on average over seeds 0-7 (0.15 to 0.55) against 0.76 (0.6 to 0.85).
    """
    ratings, pairs = _ratings_and_pairs()
    flipped = replace(pairs, labels=1 - pairs.labels)
    config = replace(mixed_config, method_settings={"boundary_gradient": True})
    update = make_updater(replace(config, reward_epochs=60))
    right, row = update([ratings, pairs], None)
    wrong, _ = update([ratings, flipped], None)
    assert (row["ratings"], row["pairs"]) == (20, 20)

    def agreement(model) -> float:
        first, second = (
            model.predict_returns(s.obs, s.acts).mean(0) for s in (pairs.first, pairs.second)
        )
        return pair_accuracy(first, second, pairs.labels)

    # each model sides with the answers it was given (0.95 vs 0.25 when every update trains all
    # epochs; 0.7 vs 0.4 when a 10% split picks the epoch)
    assert agreement(right) - agreement(wrong) >= 0.2


def test_mixed_update_weighs_the_pairs_and_logs_what_it_learned_from(mixed_config):
    ratings, pairs = _ratings_and_pairs()

    def update(weight: float, labels: list):
        config = replace(mixed_config, reward_epochs=3, preference_weight=weight)
        return make_updater(config)(labels, None)

    def returns(weight: float) -> np.ndarray:
        model, _ = update(weight, [ratings, pairs])
        return model.predict_returns(pairs.first.obs, pairs.first.acts)

    # the weight reaches the loss: same data and seed, another weight, another reward
    np.testing.assert_array_equal(returns(0.5), returns(0.5))
    assert not np.allclose(returns(2.0), returns(0.5))
    _, row = update(0.5, [ratings, pairs])
    assert (row["ratings"], row["pairs"], row["epochs"]) == (20, 20, 3)
    # ratings alone (a channel with nothing learnable yet is None): no pair columns in the log
    _, alone = update(0.5, [ratings, None])
    assert "pairs" not in alone and "ratings" not in alone


@pytest.mark.slow
def test_mixed_run_stopped_mid_round_resumes_with_every_label(tmp_path, mixed_config, crashing):
    """Stopped after round 2's ratings were stored but before its pairs: the resumed run keeps
    every label of both kinds, asks only for the missing pairs and ends with both budgets."""
    run_dir = tmp_path / "mixed"
    # the pairs' teacher (the run's own, on its stream seed + 3) dies answering round 2; the
    # ratings' teacher has answered by then
    teacher = make_preference_teacher(mixed_config)
    dies = crashing(PreferenceTeacherSource, at_round=2, when="collect")
    rng = np.random.default_rng(mixed_config.seed + 3)
    run = Run.create(mixed_config, run_dir, pair_source=dies(teacher, rng), progress=False)
    assert run.channels[1].name == "pairs"
    with pytest.raises(RuntimeError, match="stopped in round 2"):
        run.learn()
    ratings = load_rated(run_dir / "feedback.parquet")
    pairs = load_preferences(run_dir / "feedback_pairs.parquet")
    assert (len(ratings), ratings.source["rounds_done"]) == (20, 2)  # round 2's ratings: stored
    assert (len(pairs), pairs.source["rounds_done"]) == (8, 1)  # round 2's pairs: never answered
    assert not (run_dir / "summary.json").exists()

    summary = Run.resume(run_dir, config=mixed_config, progress=False).learn()
    assert (summary["labels_used"], summary["ratings_used"], summary["pairs_used"]) == (35, 20, 15)
    after_r = load_rated(run_dir / "feedback.parquet")
    after_p = load_preferences(run_dir / "feedback_pairs.parquet")
    assert after_p.source["rounds_done"] == 2 and after_r.source["rounds_done"] == 2
    np.testing.assert_array_equal(after_r.ratings, ratings.ratings)  # no rating asked again
    np.testing.assert_array_equal(after_r.segments.obs, ratings.segments.obs)
    np.testing.assert_array_equal(after_p.labels[:8], pairs.labels)
    np.testing.assert_array_equal(after_p.first.obs[:8], pairs.first.obs)
    np.testing.assert_array_equal(after_p.second.obs[:8], pairs.second.obs)
    assert summary["env_steps"] == 600


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
def test_bad_preference_budget_fails_before_training(tmp_path, mixed_config, changes, message):
    with pytest.raises(RunError, match=message):
        train(replace(mixed_config, **changes), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()  # nothing was started


def test_preference_budget_needs_the_simulated_teacher(tmp_path, mixed_config):
    rater = TeacherSource(RatingTeacher(Bins.equal_width(4, -320.0, 0.0)))
    with pytest.raises(RunError, match="preference_budget=15 .*simulated teacher"):
        train(mixed_config, tmp_path / "bad", source=rater, progress=False)
    assert not (tmp_path / "bad").exists()


def test_a_pair_source_of_ones_own_answers_the_preference_budget_and_only_it(
    tmp_path, mixed_config
):
    """People's ratings never mix with a simulated teacher's pairs: a source of one's own with
    a preference budget needs a pair source of one's own; a pair source needs the budget."""
    teacher = PreferenceTeacherSource(make_preference_teacher(mixed_config))
    raters = make_teacher_source(mixed_config)  # stands in for people (any FeedbackSource)
    with pytest.raises(RunError, match="give a pair source of your own"):
        Run.create(mixed_config, tmp_path / "a", source=raters, progress=False)
    no_pairs = replace(mixed_config, preference_budget=0)
    with pytest.raises(RunError, match="preference-budget, which is 0"):
        Run.create(no_pairs, tmp_path / "b", pair_source=teacher, progress=False)
    with pytest.raises(RunError, match="must be a PreferenceSource"):
        Run.create(mixed_config, tmp_path / "c", pair_source=raters, progress=False)
    assert not any((tmp_path / name).exists() for name in "abc")  # refused before any file
    run = Run.create(mixed_config, tmp_path / "d", source=raters, pair_source=teacher)
    assert [c.source for c in run.channels] == [raters, teacher]
    run.close()
