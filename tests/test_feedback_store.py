"""A run's labels on disk: the store keeps every label the moment it arrives, carries stored
ratings over when the scale coarsens, drops withdrawn labels from its file; a channel takes
only real feedback sources."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ratingrl.feedback.io import load_preferences, load_rated
from ratingrl.feedback.queries import UniformSelector
from ratingrl.feedback.segments import FeedbackError, PreferencePairs, RatedSegments
from ratingrl.feedback.sources import TeacherSource
from ratingrl.feedback.store import FeedbackChannel, FeedbackStore, learnable
from ratingrl.feedback.teachers import Bins, DynamicRatingTeacher, RatingTeacher


def _dynamic() -> DynamicRatingTeacher:
    fine = RatingTeacher(Bins.equal_width(4, -5.0, 0.0))
    coarse = Bins((fine.bins.edges[1],))
    return DynamicRatingTeacher(fine, coarse, switch_after=6)


def test_store_remaps_stored_ratings_when_the_scale_coarsens(tmp_path, random_segments):
    teacher = _dynamic()
    source = TeacherSource(teacher, np.random.default_rng(0))
    store = FeedbackStore(tmp_path / "f.parquet", remap=source.remapper())
    segs = random_segments(12, seed=1)
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


def test_store_retracts_labels_by_id_and_rewrites_its_file(tmp_path, make_rated, random_segments):
    path = tmp_path / "f.parquet"
    store = FeedbackStore(path, meta={"env_id": "X"}, rounds_done=2)
    store.add(make_rated([0, 1, 2], ["a", "b", "c"]))
    store.add(make_rated([2, 0], None, seed=1))  # a teacher's labels: no ids, never retracted
    assert store.data.label_id.tolist() == ["a", "b", "c", None, None]
    assert store.retract({"b", "never-collected"}) == 1
    assert len(store) == 4 and store.retracted == 1
    on_disk = load_rated(path)
    assert on_disk.label_id.tolist() == ["a", "c", None, None]
    np.testing.assert_array_equal(on_disk.ratings, [0, 2, 2, 0])
    np.testing.assert_array_equal(on_disk.segments.obs[:2], random_segments(3).obs[[0, 2]])
    assert on_disk.source["labels_retracted"] == 1 and on_disk.source["rounds_done"] == 2
    assert on_disk.source["env_id"] == "X"
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
    segs = random_segments(4)
    pairs.add(PreferencePairs(segs.subset([0, 1]), segs.subset([2, 3]), np.array([0.0, 1.0])))
    assert pairs.retract({"0", "1"}) == 0 and len(pairs) == 2


def test_store_emptied_by_retractions_survives_a_reload(tmp_path, make_rated):
    store = FeedbackStore(tmp_path / "f.parquet")
    store.add(make_rated([0, 1], ["a", "b"]))
    assert store.retract({"a", "b"}) == 2 and len(store) == 0
    resumed = FeedbackStore.load(tmp_path / "f.parquet")
    assert len(resumed) == 0 and resumed.retracted == 2
    resumed.add(make_rated([1], ["c"]))  # new labels join the empty set
    assert load_rated(tmp_path / "f.parquet").label_id.tolist() == ["c"]


def test_a_store_holds_one_kind_of_label(tmp_path, make_rated, random_segments):
    segs = random_segments(4)
    pairs = PreferencePairs(segs.subset([0, 1]), segs.subset([2, 3]), np.array([0.0, 1.0]))
    ratings = FeedbackStore(tmp_path / "r.parquet")
    ratings.add(make_rated([0, 1]))
    with pytest.raises(FeedbackError, match="cannot join a store of ratings"):
        ratings.add(pairs)
    prefs = FeedbackStore(tmp_path / "p.parquet")
    prefs.add(pairs)
    prefs.add(pairs)
    assert len(prefs) == 4 and len(FeedbackStore.load(tmp_path / "p.parquet")) == 4
    with pytest.raises(FeedbackError, match="cannot join a store of preference"):
        prefs.add(make_rated([0, 1]))


def test_labels_are_learnable_with_two_classes_or_two_pairs(make_rated, random_segments):
    assert not learnable(None) and not learnable(make_rated([1, 1, 1]))
    assert learnable(make_rated([1, 2]))
    segs = random_segments(4)
    one = PreferencePairs(segs.subset([0]), segs.subset([1]), np.array([1.0]))
    assert not learnable(one)
    assert learnable(PreferencePairs.concat([one, one]))


def test_a_channel_takes_only_feedback_sources(tmp_path, person):
    """A duck-typed object with request/collect is refused by name: the loop relies on the
    base class's capabilities (retracted, state_dict, wants_states) being there."""
    duck = SimpleNamespace(request=lambda q: None, collect=lambda timeout=0.0: None)
    store = FeedbackStore(tmp_path / "f.parquet")
    with pytest.raises(FeedbackError, match="must subclass .*FeedbackSource, got SimpleNamespace"):
        FeedbackChannel(duck, UniformSelector(), store, (1,), "ratings")
    channel = FeedbackChannel(person, UniformSelector(), store, (3, 2), "ratings")
    assert not channel.due((100, 200), 99) and channel.due((100, 200), 100)
    store.rounds_done = 2
    assert not channel.due((100, 200), 10**9)  # every round asked
    assert not channel.episode_based()  # uniform scores a random subset


def test_people_s_pairs_carry_ids_and_are_retracted_like_ratings(tmp_path, random_segments):
    path = tmp_path / "pairs.parquet"
    segs = random_segments(6)
    first, second = segs.subset([0, 1, 2]), segs.subset([3, 4, 5])
    answers = PreferencePairs(
        first, second, np.array([0.0, 1.0, 0.5]), {}, ["ann", "bob", "ann"], [11, 12, 13]
    )
    store = FeedbackStore(path)
    store.add(answers)
    assert store.retract({"12"}) == 1 and store.retracted == 1
    back = load_preferences(path)
    assert back.label_id.tolist() == ["11", "13"] and back.rater.tolist() == ["ann", "ann"]
    np.testing.assert_array_equal(back.labels, [0.0, 0.5])
    np.testing.assert_array_equal(back.second.obs, segs.obs[[3, 5]])
    assert FeedbackStore.load(path).retracted == 1
