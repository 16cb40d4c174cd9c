from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ratingrl.feedback.io import (
    DatasetError,
    load_preferences,
    load_rated,
    load_segments,
    save_preferences,
    save_rated,
    save_segments,
)
from ratingrl.feedback.segments import (
    FeedbackError,
    PreferencePairs,
    RatedSegments,
    RatingScale,
    Segment,
    SegmentSet,
)
from ratingrl.feedback.teachers import Bins, RatingTeacher, UniformRelabel


def test_segment_rejects_nan_and_names_field():
    obs = np.zeros((5, 3))
    obs[2, 1] = np.nan
    with pytest.raises(FeedbackError, match=r"obs holds a non-finite value nan at index \(2, 1\)"):
        Segment(obs, np.zeros((5, 2)))
    with pytest.raises(FeedbackError, match="true_rewards holds a non-finite value inf"):
        Segment(np.zeros((5, 3)), np.zeros((5, 2)), np.array([0, 0, np.inf, 0, 0]))


def test_segment_rejects_mismatched_lengths_and_dims():
    with pytest.raises(FeedbackError, match="obs has 5 steps but acts has 4"):
        Segment(np.zeros((5, 3)), np.zeros((4, 2)))
    with pytest.raises(FeedbackError, match="obs must have 2 dimensions"):
        Segment(np.zeros(5), np.zeros((5, 2)))
    a = Segment(np.zeros((5, 3)), np.zeros((5, 2)))
    b = Segment(np.zeros((5, 4)), np.zeros((5, 2)))
    with pytest.raises(FeedbackError, match="segment 1 has obs"):
        SegmentSet.from_segments([a, b])


def test_ratings_outside_scale_are_named(linear_segments):
    seg = linear_segments(4)
    with pytest.raises(FeedbackError, match=r"ratings\[2\] = 7 is outside the scale 0..3"):
        RatedSegments(seg, np.array([0, 1, 7, 2]), RatingScale(4))
    with pytest.raises(FeedbackError, match="ratings must be whole numbers, got 1.5"):
        RatedSegments(seg, np.array([0, 1.5, 1, 2]), RatingScale(4))
    with pytest.raises(FeedbackError, match="one rating per segment"):
        RatedSegments(seg, np.array([0, 1]), RatingScale(4))


def test_rated_roundtrip_keeps_everything(tmp_path: Path, linear_segments):
    seg = linear_segments(20, horizon=7)
    teacher = RatingTeacher(
        Bins.equal_width(3, -10, 10), (UniformRelabel(0.1),), ("bad", "ok", "good")
    )
    data = teacher.rate_dataset(seg, np.random.default_rng(0))
    path = tmp_path / "rated.parquet"
    save_rated(data, path)
    back = load_rated(path)
    np.testing.assert_array_equal(back.ratings, data.ratings)
    np.testing.assert_allclose(back.segments.obs, seg.obs)
    np.testing.assert_allclose(back.segments.true_rewards, seg.true_rewards)
    np.testing.assert_array_equal(back.segments.episode_id, seg.episode_id)
    assert back.scale == RatingScale(3, ("bad", "ok", "good"))
    assert back.source == teacher.to_dict()


def test_preferences_and_pool_roundtrip(tmp_path: Path, linear_segments):
    a, b = linear_segments(6, seed=1), linear_segments(6, seed=2)
    pairs = PreferencePairs(a, b, np.array([0, 1, 0.5, 1, 0, 1]), {"type": "preference"})
    save_preferences(pairs, tmp_path / "p.parquet")
    back = load_preferences(tmp_path / "p.parquet")
    np.testing.assert_allclose(back.labels, pairs.labels)
    np.testing.assert_allclose(back.second.acts, b.acts)
    save_segments(a, tmp_path / "pool.parquet", env="X")
    pool, extra = load_segments(tmp_path / "pool.parquet")
    assert extra == {"env": "X"}
    np.testing.assert_allclose(pool.obs, a.obs)


def test_preference_labels_checked(linear_segments):
    a = linear_segments(2)
    with pytest.raises(FeedbackError, match=r"labels\[1\] = 2.0 is outside \[0, 1\]"):
        PreferencePairs(a, a, np.array([0.0, 2.0]))


def test_foreign_and_corrupt_files_are_refused(tmp_path: Path):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    with pytest.raises(DatasetError, match="not a ratingrl dataset"):
        load_rated(foreign)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        load_rated(corrupt)
    with pytest.raises(DatasetError, match="does not exist"):
        load_rated(tmp_path / "missing.parquet")


def test_wrong_kind_is_refused(tmp_path: Path, linear_segments):
    save_segments(linear_segments(3), tmp_path / "pool.parquet")
    with pytest.raises(DatasetError, match="holds a 'segments' dataset, expected 'rated_segments'"):
        load_rated(tmp_path / "pool.parquet")


def test_bad_data_never_replaces_a_saved_file(tmp_path: Path, monkeypatch, linear_segments):
    path = tmp_path / "rated.parquet"
    seg = linear_segments(5)
    good = RatedSegments(seg, np.array([0, 1, 2, 1, 0]), RatingScale(3))
    save_rated(good, path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", explode)
    with pytest.raises(OSError, match="disk full"):
        save_rated(good, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rated.parquet"]  # no temp file left


def test_saved_files_get_normal_permissions(tmp_path: Path, linear_segments):
    import os

    path = tmp_path / "rated.parquet"
    save_rated(RatedSegments(linear_segments(3), np.array([0, 1, 0]), RatingScale(2)), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_concat_keeps_rewards_and_states_and_checks_shapes(linear_segments):
    a, b = linear_segments(3, seed=1), linear_segments(2, seed=2)
    a = SegmentSet(a.obs, a.acts, a.true_rewards, a.episode_id, a.start, states=np.ones((3, 10, 5)))
    b = SegmentSet(
        b.obs, b.acts, b.true_rewards, b.episode_id, b.start, states=np.zeros((2, 10, 5))
    )
    both = SegmentSet.concat([a, b])
    assert len(both) == 5 and both.states.shape == (5, 10, 5)
    np.testing.assert_allclose(both.true_rewards[3:], b.true_rewards)
    assert SegmentSet.concat([a, linear_segments(2)]).states is None  # not every set has them
    with pytest.raises(FeedbackError, match="segment set 1 have"):
        SegmentSet.concat([a, linear_segments(2, obs_dim=3)])


def test_label_ids_round_trip_as_strings_and_bad_ones_are_named(tmp_path: Path, linear_segments):
    seg = linear_segments(3)
    data = RatedSegments(seg, np.array([0, 1, 0]), RatingScale(2), label_id=[7, "b", None])
    assert data.label_id.tolist() == ["7", "b", None]  # a database's int ids become strings
    save_rated(data, tmp_path / "ids.parquet")
    back = load_rated(tmp_path / "ids.parquet")
    assert back.label_id.tolist() == ["7", "b", None]
    assert back.subset([2, 0]).label_id.tolist() == [None, "7"]
    assert back.without_ids({"7", "unknown"}).label_id.tolist() == ["b", None]
    with pytest.raises(FeedbackError, match=r"label_id\[1\] = '' must be a non-empty string"):
        RatedSegments(seg, np.array([0, 1, 0]), RatingScale(2), label_id=["a", "", "c"])
    with pytest.raises(FeedbackError, match=r"label_id\[0\] = 1.5 must be"):
        RatedSegments(seg, np.array([0, 1, 0]), RatingScale(2), label_id=[1.5, "b", "c"])
    with pytest.raises(FeedbackError, match=r"label_id has shape \(2,\), expected \(3,\)"):
        RatedSegments(seg, np.array([0, 1, 0]), RatingScale(2), label_id=["a", "b"])


def test_files_without_label_ids_still_load(tmp_path: Path, linear_segments):
    """A dataset written before label ids existed: same metadata, no ``label_id`` column."""
    path = tmp_path / "old.parquet"
    rater = np.array(["ann", "bob", "ann"], dtype=object)
    save_rated(
        RatedSegments(
            linear_segments(3), np.array([0, 1, 0]), RatingScale(2), {}, rater, [1, 2, 3]
        ),
        path,
    )
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["label_id"]), path)  # keeps the schema metadata
    assert "label_id" not in pq.read_schema(path).names
    back = load_rated(path)
    assert back.label_id is None and back.rater.tolist() == ["ann", "bob", "ann"]
    assert back.without_ids({"1"}) is back  # nothing can be named, nothing is dropped
    np.testing.assert_array_equal(back.ratings, [0, 1, 0])


def test_an_emptied_rated_set_saves_and_loads(tmp_path: Path, linear_segments):
    """Every label withdrawn: the file still holds the scale and the metadata."""
    data = RatedSegments(linear_segments(2), np.array([0, 1]), RatingScale(2), label_id=["a", "b"])
    empty = data.without_ids({"a", "b"})
    assert len(empty) == 0
    save_rated(empty, tmp_path / "empty.parquet")
    back = load_rated(tmp_path / "empty.parquet")
    assert len(back) == 0 and back.scale == RatingScale(2)
    assert back.segments.obs.shape == (0, 10, 4) and back.label_id.tolist() == []


def test_rated_concat_keeps_rater_and_label_id_where_a_part_has_them(linear_segments):
    seg = linear_segments(5)
    rated = RatedSegments(
        seg.subset([0, 1]), np.array([0, 1]), RatingScale(3), {"who": "app"}, ["ann", "bob"]
    )
    with_ids = RatedSegments(seg.subset([2]), np.array([2]), RatingScale(3), label_id=["7"])
    plain = RatedSegments(seg.subset([3, 4]), np.array([1, 0]), RatingScale(3), {"who": "x"})
    both = RatedSegments.concat([rated, with_ids, plain])
    assert len(both) == 5 and both.scale == RatingScale(3)
    np.testing.assert_array_equal(both.ratings, [0, 1, 2, 1, 0])
    np.testing.assert_array_equal(both.segments.obs, seg.obs)
    assert both.rater.tolist() == ["ann", "bob", None, None, None]
    assert both.label_id.tolist() == [None, None, "7", None, None]
    assert both.source == {"who": "app"}  # the first part's
    alone = RatedSegments.concat([plain, plain])
    assert alone.rater is None and alone.label_id is None  # no part has them: none made up


def test_rated_concat_refuses_mixed_scales_and_nothing(linear_segments):
    seg = linear_segments(2)
    fine = RatedSegments(seg, np.array([0, 3]), RatingScale(4))
    coarse = RatedSegments(seg, np.array([0, 1]), RatingScale(2))
    with pytest.raises(FeedbackError, match="scale"):
        RatedSegments.concat([fine, coarse])
    with pytest.raises(FeedbackError, match="empty list"):
        RatedSegments.concat([])


def test_preference_concat_keeps_both_sides_in_order(linear_segments):
    a, b = linear_segments(5, seed=1), linear_segments(5, seed=2)
    first = PreferencePairs(a.subset([0, 1]), b.subset([0, 1]), np.array([0.0, 1.0]), {"n": 1})
    second = PreferencePairs(a.subset([2, 3, 4]), b.subset([2, 3, 4]), np.array([0.5, 1.0, 0.0]))
    both = PreferencePairs.concat([first, second])
    assert len(both) == 5 and both.source == {"n": 1}
    np.testing.assert_array_equal(both.labels, [0.0, 1.0, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(both.first.obs, a.obs)
    np.testing.assert_array_equal(both.second.acts, b.acts)
    with pytest.raises(FeedbackError, match="empty list"):
        PreferencePairs.concat([])
    other = linear_segments(1, obs_dim=3)  # from another environment
    with pytest.raises(FeedbackError, match="segment set 1 have"):
        PreferencePairs.concat([first, PreferencePairs(other, other, np.array([1.0]))])


def test_preference_pairs_keep_rater_and_label_id_through_subset_concat_and_files(
    linear_segments, tmp_path
):
    a, b = linear_segments(3, seed=1), linear_segments(3, seed=2)
    named = PreferencePairs(a.subset([0, 1]), b.subset([0, 1]), [0.0, 1.0], {}, ["x", "y"], [5, 6])
    plain = PreferencePairs(a.subset([2]), b.subset([2]), [0.5])
    both = PreferencePairs.concat([named, plain])
    assert both.rater.tolist() == ["x", "y", None] and both.label_id.tolist() == ["5", "6", None]
    assert both.subset([1]).label_id.tolist() == ["6"]
    assert both.without_ids({"5"}).label_id.tolist() == ["6", None]
    save_preferences(both, tmp_path / "p.parquet")
    back = load_preferences(tmp_path / "p.parquet")
    assert back.rater.tolist() == ["x", "y", None] and back.label_id.tolist() == ["5", "6", None]
    with pytest.raises(FeedbackError, match="label_id has shape"):
        PreferencePairs(a, b, [0.0, 1.0, 0.5], label_id=["1"])
