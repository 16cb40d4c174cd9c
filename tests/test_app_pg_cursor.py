"""The training source hands out every rating once, whatever order their transactions commit in.

On PostgreSQL a row's id is drawn from a sequence when it is inserted, not when its transaction
commits: a rater whose transaction holds id 7 can commit after another rater's id 8 was already
collected. A cursor ("ids above the last one collected") skips id 7 for good; the source records
what it was handed instead. SQLite commits writers one at a time, so ids always commit in order
there: the out-of-order tests run on PostgreSQL only; the resume test runs on both.
"""

from __future__ import annotations

import pytest

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.app.source import AppRatingSource

ON_POSTGRES = pytest.mark.parametrize(
    "db_backend", [pytest.param("postgresql", marks=pytest.mark.postgres)]
)


def _project(db: str, n_segments: int = 4) -> tuple[AppRatingSource, dict[str, str]]:
    """Raters alice and bob, and a source that queued ``n_segments`` clips (one rating each)."""
    spec = DemoSpec(n_segments=0, raters=("alice", "bob"), references=False)
    tokens = seed_demo(db, spec)
    source = AppRatingSource(db)
    source.request(synthetic_segments(n_segments, spec.clip_length, 4, 2, seed=3))
    return source, tokens


def _shown(database, token: str) -> str:
    """The clip the rater is shown next (committed, as ``GET /api/next`` does)."""
    with database.unit() as session:
        return store.next_item(session, store.rater_for_token(session, token)).public_id


def _rate(database, token: str, value: int) -> int:
    """One rating in a unit of its own; returns its id."""
    clip = _shown(database, token)
    with database.unit() as session:
        return store.submit(session, store.rater_for_token(session, token), clip, value).rating_id


def _ids(rated) -> list[int]:
    return [] if rated is None else [int(i) for i in rated.label_id]


@ON_POSTGRES
def test_a_rating_committed_after_a_later_id_was_collected_is_still_collected(db_url, run_sql):
    source, tokens = _project(db_url)
    with open_database(db_url) as database:
        alice_clip, bob_clip = _shown(database, tokens["alice"]), _shown(database, tokens["bob"])
        slow = database.sessions()  # alice's request: inserted first, commits last
        alice = store.rater_for_token(slow, tokens["alice"])
        early_id = store.submit(slow, alice, alice_clip, 1).rating_id  # id drawn, not committed
        with database.unit() as session:  # bob's request: inserted second, commits first
            bob = store.rater_for_token(session, tokens["bob"])
            late_id = store.submit(session, bob, bob_clip, 3).rating_id
        assert early_id < late_id
        first = source.collect(timeout=0)
        assert _ids(first) == [late_id] and first.ratings.tolist() == [3]  # alice's is not visible
        slow.commit()
        slow.close()
    # the old cursor asked for ids above the last one collected: alice's rating is below it
    cursor = max(_ids(first))
    assert run_sql(db_url, "SELECT id FROM ratings WHERE id > :c", c=cursor) == []
    assert run_sql(db_url, "SELECT value FROM ratings WHERE id = :i", i=early_id) == [(1,)]
    # the source asks for what it has not been handed: alice's rating arrives, once
    second = source.collect(timeout=0)
    assert _ids(second) == [early_id] and second.ratings.tolist() == [1]
    assert second.rater.tolist() == ["alice"]
    assert source.collect(timeout=0) is None
    source.close()


@ON_POSTGRES
def test_an_undo_committed_after_a_later_one_was_reported_is_still_reported(db_url):
    source, tokens = _project(db_url)
    with open_database(db_url) as database:
        alice_rating = _rate(database, tokens["alice"], 0)
        bob_rating = _rate(database, tokens["bob"], 2)
        assert sorted(_ids(source.collect(timeout=0))) == [alice_rating, bob_rating]
        slow = database.sessions()  # alice's undo draws the smaller id and commits last
        assert store.undo_last(slow, store.rater_for_token(slow, tokens["alice"])) is not None
        with database.unit() as session:
            assert store.undo_last(session, store.rater_for_token(session, tokens["bob"]))
        assert source.retracted() == [str(bob_rating)]
        slow.commit()
        slow.close()
    assert source.retracted() == [str(alice_rating)]
    assert source.retracted() == []
    source.close()


def test_a_resumed_source_collects_what_the_crashed_one_was_not_handed(db_url):
    source, tokens = _project(db_url, n_segments=3)
    checkpoint = source.state_dict()  # the run's last checkpoint, before anything was collected
    with open_database(db_url) as database:
        handed = [_rate(database, tokens["alice"], v) for v in (2, 0)]
        assert _ids(source.collect(timeout=0)) == handed  # stored by the run, then it crashes
        source.close()
        later = _rate(database, tokens["bob"], 3)  # rated while the run was down
    resumed = AppRatingSource(db_url)  # what `ratingrl train --resume` builds ...
    resumed.load_state_dict(checkpoint)  # ... and puts back to the checkpoint
    assert resumed.tag == source.tag
    rated = resumed.collect(timeout=0)
    assert _ids(rated) == [later] and rated.ratings.tolist() == [3]  # none handed out twice
    assert resumed.collect(timeout=0) is None
    resumed.close()
    stranger = AppRatingSource(db_url)  # another run: the clips of this one are not its own
    assert stranger.collect(timeout=0) is None
    stranger.close()
