"""The comparison queue in the store: who sees which pair, answers, undo, the dataset it gives.

Pairs follow the rating queue's rules: a reload shows the same pair, a rater never sees a pair
twice, a retried answer is a no-op and a different one a conflict, and undo shows the pair
again. Pair clips never enter the rating queue, and the dataset's first clip is the left one.
"""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.app import store
from ratingrl.app.db import PairRow, PairSegmentRow, bytes_to_array
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database

H = 10  # the demo's clip length


@pytest.fixture
def project_db(make_db_url):
    """``build(asks="both", **spec)`` -> (database, {rater: token}) of a demo project with no
    rating clips unless ``n_segments`` says so; on SQLite and on PostgreSQL."""
    opened = []

    def build(asks: str = "both", **spec):
        url = make_db_url()
        tokens = seed_demo(url, DemoSpec(**{"n_segments": 0, "references": False, **spec}))
        database = open_database(url)
        opened.append(database)
        with database.unit() as session:
            store.set_asks(session, store.get_project(session), asks)
        return database, tokens

    yield build
    for database in opened:
        database.close()


def _queue(database, n: int, seed: int = 0, priority=0.0, tag: str | None = "t") -> list[int]:
    segs = synthetic_segments(2 * n, H, 4, 2, seed)
    with database.unit() as session:
        project = store.get_project(session)
        first, second = segs.subset(range(n)), segs.subset(range(n, 2 * n))
        return store.add_pairs(session, project, first, second, priority, source_tag=tag)


def _rater(session, token: str):
    return store.rater_for_token(session, token)


def test_a_reload_shows_the_same_pair_and_no_pair_comes_twice(project_db):
    database, tokens = project_db()
    _queue(database, 3, priority=np.array([0.0, 2.0, 1.0]))
    seen = []
    with database.unit() as session:
        alice = _rater(session, tokens["alice"])
        assert store.pair_progress(session, alice) == {"answered": 0, "queued": 3}
        for choice in ("left", "right", "equal"):
            item = store.next_pair(session, alice)
            assert store.next_pair(session, alice).id == item.id  # asked again: same pair
            seen.append(item.pair_id)
            store.answer_pair(session, alice, item.public_id, choice)
        assert store.next_pair(session, alice) is None
        assert store.pair_progress(session, alice) == {"answered": 3, "queued": 0}
    pair_ids = sorted(seen)
    assert seen == [pair_ids[1], pair_ids[2], pair_ids[0]]  # by priority, highest first


def test_answers_per_pair_follow_ratings_per_clip(project_db):
    database, tokens = project_db(ratings_per_clip=1)
    _queue(database, 1)
    with database.unit() as session:
        alice, bob = _rater(session, tokens["alice"]), _rater(session, tokens["bob"])
        item = store.next_pair(session, alice)
        assert store.next_pair(session, bob) is None  # alice holds the only answer it needs
        store.answer_pair(session, alice, item.public_id, None, skip=True)
        assert store.next_pair(session, bob).pair_id == item.pair_id  # a skip frees it
        assert store.next_pair(session, alice) is None  # never shown to alice again

    database, tokens = project_db(ratings_per_clip=2)
    _queue(database, 1)
    with database.unit() as session:
        alice, bob = _rater(session, tokens["alice"]), _rater(session, tokens["bob"])
        a, b = store.next_pair(session, alice), store.next_pair(session, bob)
        assert a.pair_id == b.pair_id and a.public_id != b.public_id  # ids are per rater


def test_duplicate_answers_conflicts_and_refusals_change_nothing(project_db):
    database, tokens = project_db()
    _queue(database, 2)
    with database.unit() as session:
        alice, bob = _rater(session, tokens["alice"]), _rater(session, tokens["bob"])
        item = store.next_pair(session, alice)
        first = store.answer_pair(session, alice, item.public_id, "right")
        again = store.answer_pair(session, alice, item.public_id, "right")
        assert first.created and not again.created and again.answer_id == first.answer_id
        with pytest.raises(store.Conflict, match="already answered right; undo"):
            store.answer_pair(session, alice, item.public_id, "left")
        with pytest.raises(store.NotFound):  # another rater's pair does not exist for bob
            store.answer_pair(session, bob, item.public_id, "left")
        nxt = store.next_pair(session, alice)
        for choice, skip, message in [
            ("better", False, "choice must be left, right or equal"),
            (None, False, "choice is required"),
            ("left", True, "either a choice or skip"),
        ]:
            with pytest.raises(store.AppError, match=message):
                store.answer_pair(session, alice, nxt.public_id, choice, skip=skip)
        answers = store.current_pair_answers(session, store.get_project(session))
        assert [a.id for a in answers] == [first.answer_id]


def test_undo_withdraws_the_latest_answer_and_shows_its_pair_again(project_db):
    database, tokens = project_db()
    _queue(database, 2)
    with database.unit() as session:
        alice = _rater(session, tokens["alice"])
        project = store.get_project(session)
        one = store.next_pair(session, alice)
        kept = store.answer_pair(session, alice, one.public_id, "left")
        two = store.next_pair(session, alice)
        skipped = store.answer_pair(session, alice, two.public_id, None, skip=True)
        assert store.undo_last_pair(session, alice).id == two.id  # the skip: not a label
        assert store.next_pair(session, alice).id == two.id
        assert store.withdrawn_pair_answers(session, project) == []
        assert store.undo_last_pair(session, alice).id == one.id  # then the answer before it
        withdrawn = store.withdrawn_pair_answers(session, project)
        assert [answer for _undo, answer in withdrawn] == [kept.answer_id]
        assert store.current_pair_answers(session, project) == []
        again = store.answer_pair(session, alice, one.public_id, "equal")
        assert again.created and again.answer_id not in (kept.answer_id, skipped.answer_id)
        assert [a.id for a in store.current_pair_answers(session, project)] == [again.answer_id]
        assert store.pair_progress(session, alice) == {"answered": 1, "queued": 1}


def test_the_dataset_puts_the_left_clip_first_and_labels_by_choice(project_db):
    database, tokens = project_db()
    _queue(database, 3, tag="mine")
    _queue(database, 1, seed=5, tag="other")
    with database.unit() as session:
        alice = _rater(session, tokens["alice"])
        shown = {}
        for choice in ("left", "right", "equal", "left"):
            item = store.next_pair(session, alice)
            shown[item.id] = store.pair_sides(session, item)
            store.answer_pair(session, alice, item.public_id, choice)
        project = store.get_project(session)
        mine = store.current_pair_answers(session, project, source_tag="mine")
        answered = store.answered_pairs(session, mine)
        names = store.rater_names(session, project)
        data = store.preference_pairs(answered, {"kind": "app"}, names)
        assert len(store.current_pair_answers(session, project)) == 4
    assert len(data) == 3 and data.labels.tolist() == [0.0, 1.0, 0.5]
    assert data.rater.tolist() == ["alice"] * 3  # who answered, and which answer it was
    assert data.label_id.tolist() == [str(a.answer.id) for a in answered]
    for i, pair in enumerate(answered):
        left, right = shown[pair.item.id]
        assert pair.left.id == left.id and pair.right.id == right.id
        assert np.allclose(data.first.obs[i], bytes_to_array(left.obs))
        assert np.allclose(data.second.obs[i], bytes_to_array(right.obs))
        assert data.first.episode_id[i] == left.episode_id


def test_sides_are_drawn_at_random(project_db):
    database, tokens = project_db()
    _queue(database, 40)
    with database.unit() as session:
        alice = _rater(session, tokens["alice"])
        swapped = []
        while (item := store.next_pair(session, alice)) is not None:
            swapped.append(item.swapped)
            store.answer_pair(session, alice, item.public_id, "left")
    assert 5 <= sum(swapped) <= 35  # 40 fair coin flips


def test_pair_clips_never_enter_the_rating_queue(project_db):
    database, tokens = project_db(n_segments=2)
    _queue(database, 3)
    with database.unit() as session:
        alice = _rater(session, tokens["alice"])
        project = store.get_project(session)
        assert store.count_clips(session, project) == 2
        rated = []
        while (item := store.next_item(session, alice)) is not None:
            rated.append(item.segment_id)
            store.submit(session, alice, item.public_id, 1)
        assert len(rated) == 2
        assert store.progress(session, alice)["queued"] == 0
        assert store.pair_progress(session, alice)["queued"] == 3


def test_a_segment_given_twice_in_one_request_is_stored_once(project_db):
    database, _tokens = project_db()
    segs = synthetic_segments(3, H, 4, 2, seed=0)
    with database.unit() as session:
        project = store.get_project(session)
        store.add_pairs(session, project, segs.subset([0, 0]), segs.subset([1, 2]))
    with database.unit() as session:
        assert session.query(PairSegmentRow).count() == 3
        assert len({p.first_id for p in session.query(PairRow)}) == 1


def test_a_project_asking_for_ratings_only_refuses_pairs(project_db):
    database, tokens = project_db(asks="ratings")
    with pytest.raises(store.Conflict, match="asks for ratings only"):
        _queue(database, 1)
    with database.unit() as session:
        with pytest.raises(store.Conflict, match="asks for ratings only"):
            store.next_pair(session, _rater(session, tokens["alice"]))
        with pytest.raises(store.AppError, match="asks must be one of ratings, pairs, both"):
            store.set_asks(session, store.get_project(session), "videos")
