"""People's comparisons as a training source: queued pairs reach the page, each answer is handed
out once with the label of the side chosen (left clip first), whatever order answers commit in,
withdrawals are reported once, and a resumed source goes on where the first one stopped."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.app import store
from ratingrl.app.db import bytes_to_array
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.pair_source import AppPreferenceSource
from ratingrl.app.schema import open_database
from ratingrl.feedback.preference_source import PreferenceSource, SegmentPairs
from ratingrl.feedback.segments import FeedbackError

ON_POSTGRES = pytest.mark.parametrize(
    "db_backend", [pytest.param("postgresql", marks=pytest.mark.postgres)]
)
H = 10


def _pairs(n: int, seed: int = 3) -> SegmentPairs:
    segs = synthetic_segments(2 * n, H, 4, 2, seed)
    return SegmentPairs(segs.subset(range(n)), segs.subset(range(n, 2 * n)))


@pytest.fixture
def app(db_url):
    """(source, database, tokens): a project asking for both, a source that queued 4 pairs."""
    tokens = seed_demo(db_url, DemoSpec(n_segments=0, raters=("alice", "bob"), references=False))
    database = open_database(db_url)
    with database.unit() as session:
        store.set_asks(session, store.get_project(session), "both")
    source = AppPreferenceSource(db_url)
    source.request(_pairs(4))
    yield source, database, tokens
    source.close()
    database.close()


def _shown(database, token: str):
    """The pair the rater is shown next, committed (as ``GET /api/pairs/next``): its id and the
    observations of its (left, right) clips."""
    with database.unit() as session:
        item = store.next_pair(session, store.rater_for_token(session, token))
        left, right = store.pair_sides(session, item)
        return item.public_id, (left.obs, right.obs)


def _answer(database, token: str, choice: str | None) -> tuple[int, tuple]:
    """One answer (None: a skip) in a unit of its own; its id and the clips as shown."""
    pair, clips = _shown(database, token)
    with database.unit() as session:
        rater = store.rater_for_token(session, token)
        result = store.answer_pair(session, rater, pair, choice, skip=choice is None)
    return result.answer_id, clips


def _undo(database, token: str) -> None:
    with database.unit() as session:
        assert store.undo_last_pair(session, store.rater_for_token(session, token)) is not None


def test_answers_come_back_once_as_labelled_pairs_left_clip_first(app):
    source, database, tokens = app
    assert isinstance(source, PreferenceSource) and source.kind == "pairs"
    assert source.wants_states is True
    assert source.collect(timeout=0) is None
    answers = [_answer(database, tokens["alice"], c) for c in ("left", "right", "equal")]
    _answer(database, tokens["alice"], None)  # a skip is not a label
    data = source.collect(timeout=0)
    assert data.labels.tolist() == [0.0, 1.0, 0.5]
    for i, (_id, (left, right)) in enumerate(answers):
        assert np.allclose(data.first.obs[i], bytes_to_array(left))
        assert np.allclose(data.second.obs[i], bytes_to_array(right))
    assert data.first.true_rewards is not None  # the queued segments' own arrays come back
    assert data.source["source_tag"] == source.tag
    assert source.collect(timeout=0) is None  # each answer once
    later = _answer(database, tokens["bob"], "right")
    assert source.collect(timeout=0).labels.tolist() == [1.0]
    assert later[0] > answers[-1][0]


def test_collect_waits_for_an_answer_up_to_its_timeout(app):
    import threading

    source, database, tokens = app
    timer = threading.Timer(0.3, _answer, args=(database, tokens["alice"], "left"))
    timer.start()
    try:
        data = source.collect(timeout=10)
    finally:
        timer.join()
    assert data is not None and data.labels.tolist() == [0.0]


def test_withdrawals_of_handed_out_answers_are_reported_once(app):
    source, database, tokens = app
    kept, _ = _answer(database, tokens["alice"], "left")
    taken_back, _ = _answer(database, tokens["alice"], "right")
    assert len(source.collect(timeout=0)) == 2
    assert source.retracted() == []
    _undo(database, tokens["alice"])  # withdraws ``taken_back``, handed out already
    assert source.retracted() == [str(taken_back)]
    assert source.retracted() == []
    before, _ = _answer(database, tokens["bob"], "equal")
    _undo(database, tokens["bob"])  # withdrawn before it was handed out: never a label
    assert source.collect(timeout=0) is None and source.retracted() == []
    again, _ = _answer(database, tokens["alice"], "equal")  # the pair again: a new answer
    data = source.collect(timeout=0)
    assert data.labels.tolist() == [0.5] and again not in (kept, taken_back, before)


def test_a_resumed_source_collects_where_the_first_stopped(app, db_url):
    source, database, tokens = app
    _answer(database, tokens["alice"], "left")
    assert len(source.collect(timeout=0)) == 1
    _answer(database, tokens["alice"], "right")  # answered while the run was down
    resumed = AppPreferenceSource(db_url)
    try:
        assert resumed.tag != source.tag and resumed.collect(timeout=0) is None  # not its pairs
        resumed.load_state_dict(source.state_dict())
        assert resumed.collect(timeout=0).labels.tolist() == [1.0]  # only the new one
    finally:
        resumed.close()


def test_a_project_asking_for_ratings_only_is_refused(db_url):
    seed_demo(db_url, DemoSpec(n_segments=0, references=False))
    with pytest.raises(FeedbackError, match="asks its raters for ratings only"):
        AppPreferenceSource(db_url)


def test_an_empty_request_is_refused_and_stores_nothing(app, run_sql, db_url):
    source, _database, _tokens = app
    before = run_sql(db_url, "SELECT count(*) FROM pairs")
    with pytest.raises(FeedbackError, match="at least one pair"):
        source.request(SegmentPairs(_pairs(1).first.subset([]), _pairs(1).second.subset([])))
    wrong = synthetic_segments(2, H + 1, 4, 2, seed=0)
    with pytest.raises(store.AppError, match="horizon 11"):
        source.request(SegmentPairs(wrong.subset([0]), wrong.subset([1])))
    assert run_sql(db_url, "SELECT count(*) FROM pairs") == before


@ON_POSTGRES
def test_an_answer_committed_after_a_later_one_was_collected_is_still_collected(app):
    source, database, tokens = app
    alice_pair, _ = _shown(database, tokens["alice"])
    bob_pair, _ = _shown(database, tokens["bob"])
    slow = database.sessions()  # alice's request: inserted first, commits last
    alice = store.rater_for_token(slow, tokens["alice"])
    early = store.answer_pair(slow, alice, alice_pair, "left").answer_id
    with database.unit() as session:
        bob = store.rater_for_token(session, tokens["bob"])
        late = store.answer_pair(session, bob, bob_pair, "right").answer_id
    assert early < late
    assert source.collect(timeout=0).labels.tolist() == [1.0]
    slow.commit()
    slow.close()
    assert source.collect(timeout=0).labels.tolist() == [0.0]  # the late commit, once
    assert source.collect(timeout=0) is None


def test_an_undone_answer_leaves_the_run_s_feedback_store(app, tmp_path):
    """What the online loop does with the source: collected answers are stored, named by their
    answer id and rater; an undo after collection removes exactly that pair from the store."""
    from ratingrl.feedback.store import FeedbackStore

    source, database, tokens = app
    kept, _ = _answer(database, tokens["alice"], "left")
    taken_back, _ = _answer(database, tokens["bob"], "right")
    run_store = FeedbackStore(tmp_path / "feedback.parquet")
    run_store.add(source.collect(timeout=0))
    assert run_store.data.label_id.tolist() == [str(kept), str(taken_back)]
    assert run_store.data.rater.tolist() == ["alice", "bob"]
    _undo(database, tokens["bob"])
    assert run_store.retract(source.retracted()) == 1
    assert run_store.data.label_id.tolist() == [str(kept)] and run_store.retracted == 1
    assert run_store.data.labels.tolist() == [0.0]
