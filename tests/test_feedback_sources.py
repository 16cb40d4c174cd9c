"""Feedback sources say what they can do and carry their own state across a resume: a teacher's
random stream and rating count, a preference teacher's stream and skips; the defaults of the
base class are the safe ones (no states wanted, nothing withdrawn, nothing to save)."""

from __future__ import annotations

import pickle

import numpy as np

from ratingrl.feedback.preference_source import PreferenceTeacherSource, SegmentPairs
from ratingrl.feedback.segments import SegmentSet
from ratingrl.feedback.sources import FeedbackSource, RatingSource, TeacherSource
from ratingrl.feedback.teachers import (
    Bins,
    DynamicRatingTeacher,
    PreferenceTeacher,
    RatingTeacher,
    UniformRelabel,
)


def _noisy_teacher() -> RatingTeacher:
    """Half of its answers are random: its answers depend on where its stream is."""
    return RatingTeacher(Bins.equal_width(4, -5.0, 0.0), (UniformRelabel(0.5),))


def _dynamic(switch_after: int = 6) -> DynamicRatingTeacher:
    fine = RatingTeacher(Bins.equal_width(4, -5.0, 0.0))
    return DynamicRatingTeacher(fine, Bins((fine.bins.edges[1],)), switch_after=switch_after)


def _answers(source: TeacherSource, segments: SegmentSet) -> np.ndarray:
    source.request(segments)
    return source.collect().ratings


def test_teacher_source_continues_its_random_stream_after_a_resume(random_segments):
    segs = random_segments(40, seed=3)
    running = TeacherSource(_noisy_teacher(), np.random.default_rng(1))
    _answers(running, segs.subset(range(20)))
    saved = pickle.loads(pickle.dumps(running.state_dict()))  # what a checkpoint keeps
    expected = _answers(running, segs.subset(range(20, 40)))
    resumed = TeacherSource(_noisy_teacher(), np.random.default_rng(1))  # a fresh stream
    resumed.load_state_dict(saved)
    np.testing.assert_array_equal(_answers(resumed, segs.subset(range(20, 40))), expected)
    fresh = TeacherSource(_noisy_teacher(), np.random.default_rng(1))
    assert not np.array_equal(_answers(fresh, segs.subset(range(20, 40))), expected)


def test_teacher_source_keeps_the_dynamic_teachers_count(random_segments):
    segs = random_segments(10, seed=1)
    running = TeacherSource(_dynamic(switch_after=6), np.random.default_rng(0))
    _answers(running, segs.subset(range(4)))
    state = running.state_dict()
    assert state["rated"] == 4
    resumed = TeacherSource(_dynamic(switch_after=6), np.random.default_rng(0))
    resumed.load_state_dict(state)
    assert resumed.teacher.rated == 4 and resumed.scale.n == 4
    _answers(resumed, segs.subset(range(4, 6)))
    assert resumed.scale.n == 2  # switched after 6 ratings in all, as without the stop
    # labels stored after the checkpoint were rated too: the count never goes back
    late = TeacherSource(_dynamic(switch_after=6), np.random.default_rng(0))
    late.load_state_dict(state)
    late.resumed(7)
    assert late.teacher.rated == 7 and late.scale.n == 2
    late.load_state_dict({"rated": 3})
    late.resumed(5)
    assert late.teacher.rated == 7
    # a fixed-scale teacher has no count to keep
    plain = TeacherSource(_noisy_teacher(), np.random.default_rng(0))
    assert set(plain.state_dict()) == {"rng"}
    plain.resumed(100)
    assert plain.remapper() is None


def test_dynamic_teacher_source_remaps_with_its_teacher():
    source = TeacherSource(_dynamic(), np.random.default_rng(0))
    remap = source.remapper()
    fine = np.array([0, 1, 2, 3])
    np.testing.assert_array_equal(remap(fine), source.teacher.remap(fine))


def _pairs(random_segments, n: int, seed: int) -> SegmentPairs:
    segs = random_segments(2 * n, seed=seed)
    return SegmentPairs(segs.subset(range(n)), segs.subset(range(n, 2 * n)))


def test_preference_teacher_source_round_trips_its_stream_and_skips(random_segments):
    teacher = PreferenceTeacher(mistake=0.3, skip_threshold=-3.0)  # random mistakes, some skips
    running = PreferenceTeacherSource(teacher, np.random.default_rng(5))
    running.request(_pairs(random_segments, 30, seed=0))
    running.collect()
    assert running.skipped > 0
    saved = pickle.loads(pickle.dumps(running.state_dict()))
    running.request(_pairs(random_segments, 30, seed=1))
    expected = running.collect().labels
    resumed = PreferenceTeacherSource(teacher, np.random.default_rng(5))
    resumed.load_state_dict(saved)
    assert resumed.skipped == saved["skipped"] > 0
    resumed.request(_pairs(random_segments, 30, seed=1))
    np.testing.assert_array_equal(resumed.collect().labels, expected)
    assert resumed.skipped == running.skipped


def test_preference_source_drops_skipped_queries(random_segments):
    pairs = _pairs(random_segments, 4, seed=0)
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


def test_sources_declare_their_capabilities(person):
    teacher = TeacherSource(RatingTeacher(Bins.equal_width(4, -5.0, 0.0)))
    pairs = PreferenceTeacherSource(PreferenceTeacher())
    assert (teacher.kind, pairs.kind) == ("ratings", "pairs")
    # simulated teachers want no simulator states and never change their minds
    assert not teacher.wants_states and not pairs.wants_states
    assert list(teacher.retracted()) == [] and list(pairs.retracted()) == []
    # a source that takes labels back says so through retracted(), each id once
    person.withdrawn = ["7"]
    assert person.retracted() == ["7"] and person.retracted() == []
    # the base class's defaults: nothing to save, loading nothing changes nothing
    assert isinstance(person, RatingSource) and isinstance(person, FeedbackSource)
    assert person.state_dict() == {} and person.remapper() is None
    person.load_state_dict({})
    person.resumed(3)
