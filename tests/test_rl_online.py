"""Online feedback beyond plain ratings: preference queries (bt), a rating scale that changes
mid-run, and what the run logs (CSV columns, TensorBoard, learned return of training episodes)."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from ratingrl.feedback.io import load_preferences, load_rated, read_metadata
from ratingrl.feedback.preference_source import PreferenceTeacherSource, SegmentPairs
from ratingrl.feedback.segments import FeedbackError, PreferencePairs, RatedSegments, SegmentSet
from ratingrl.feedback.sources import TeacherSource
from ratingrl.feedback.teachers import Bins, DynamicRatingTeacher, PreferenceTeacher, RatingTeacher
from ratingrl.rl.online import FeedbackStore, remap_hook
from ratingrl.rl.train import RunError, train

from .test_rl_train import TINY as TRAIN_TINY

torch.set_num_threads(1)

# The training tests' tiny SAC run, asking for preferences, with a buffer that does not wrap.
TINY = replace(TRAIN_TINY, method="bt", buffer_size=1000, checkpoint_every=300)


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
