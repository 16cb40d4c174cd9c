"""The rating queue's rules, now that it reads counters instead of counting items.

Priority order, ``ratings_per_clip`` shared by raters, the lease of a shown clip, the same clip
when asked twice, skip and undo giving places back, one item for two simultaneous requests of
one rater -- and the counters always equal what the items say, also after an upgrade computed
them for an existing database. On SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import insert

from ratingrl.app import store
from ratingrl.app.db import QueueItem
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import BASELINE_REVISION, alembic_config, open_database, upgrade_database
from ratingrl.app.server import create_app
from ratingrl.app.store import queue

OPERATOR = "operator-secret-token"
LEASE_S = store.SHOWN_LEASE_S


@pytest.fixture
def app(tmp_path, db_url):
    """``app(**spec)`` -> a client of a seeded app and ``{rater: auth headers}``."""
    built: list[TestClient] = []

    def build(**spec):
        tokens = seed_demo(db_url, DemoSpec(**spec))
        client = TestClient(create_app(db_url, tmp_path / "clips", OPERATOR))
        client.__enter__()
        built.append(client)
        return client, {name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()}

    yield build
    for client in built:
        client.__exit__(None, None, None)


def _next(client, headers) -> dict:
    return client.get("/api/next", headers=headers).json()


def _answer(client, headers, clip: str, **answer) -> None:
    response = client.post("/api/ratings", json={"clip_id": clip, **answer}, headers=headers)
    assert response.status_code == 201, response.text


def _segments_of(run_sql, db: str):
    """``segment(clip_id)``: the clip behind a rater's item (items have ids of their own)."""
    return lambda clip: run_sql(
        db, "SELECT segment_id FROM queue_items WHERE public_id = :c", c=clip
    )[0][0]


def _expire_leases(run_sql, db: str) -> None:
    """As if the lease time had passed since every clip now shown was shown."""
    run_sql(
        db,
        "UPDATE queue_items SET shown_at = shown_at - :s, lease_until = lease_until - :s "
        "WHERE status = 'shown'",
        s=LEASE_S + 1,
    )


def assert_counters_match_items(run_sql, db: str) -> None:
    """Every clip's counters, and each project's open count, as the items say they must be."""
    rows = run_sql(
        db,
        "SELECT s.id, s.reference_level, c.segment_id, c.rated_count, c.lease_count, c.is_open, "
        "p.ratings_per_clip, c.priority = s.priority, c.project_id = s.project_id, "
        "(SELECT count(*) FROM queue_items q WHERE q.segment_id = s.id AND q.is_repeat = false "
        "  AND q.status = 'rated'), "
        "(SELECT count(*) FROM queue_items q WHERE q.segment_id = s.id "
        "  AND q.lease_until IS NOT NULL) "
        "FROM segments s JOIN projects p ON p.id = s.project_id "
        "LEFT JOIN clip_slots c ON c.segment_id = s.id",
    )
    assert rows
    for segment, reference, slot, rated, leased, is_open, per_clip, *same, n_rated, n_leased in (
        rows
    ):
        assert (slot is None) == (reference is not None), segment  # every queued clip has one
        if slot is not None:
            assert all(same) and (rated, leased) == (n_rated, n_leased), segment
            assert bool(is_open) == (rated + leased < per_clip), segment
    # a lease belongs only to a first-time item that is shown
    stray = "SELECT count(*) FROM queue_items WHERE lease_until IS NOT NULL AND " + (
        "(status <> 'shown' OR is_repeat = true)"
    )
    assert run_sql(db, stray) == [(0,)]
    counted = run_sql(
        db,
        "SELECT p.id, (SELECT coalesce(sum(c.open_clips), 0) FROM queue_counters c "
        "  WHERE c.project_id = p.id), "
        "(SELECT count(*) FROM clip_slots s WHERE s.project_id = p.id AND s.is_open = true) "
        "FROM projects p",
    )
    assert all(int(total) == int(n) for _p, total, n in counted), counted


def test_clips_come_by_priority_then_oldest_first_also_when_added_later(db_url, run_sql):
    spec = DemoSpec()
    with open_database(db_url) as database:
        with database.unit() as session:
            config = store.ProjectConfig("p", spec.env_id, spec.scale, 10, repeat_every=0)
            project = store.create_project(session, config)
            priority = np.array([0.0, 2.0, 1.0, 2.0, -1.0])
            ids = store.add_segments(
                session, project, synthetic_segments(5, 10, 4, 2, seed=0), priority=priority
            )
            token = store.add_rater(session, project, "ann")
        order = []
        for step in range(7):
            with database.unit() as session:
                if step == 2:  # a more urgent clip arrives mid-way: it comes next
                    project = store.get_project(session, "p")
                    ids += store.add_segments(
                        session, project, synthetic_segments(2, 10, 4, 2, seed=1),
                        priority=np.array([5.0, -2.0]),
                    )  # fmt: skip
                rater = store.rater_for_token(session, token)
                item = store.next_item(session, rater)
                order.append(item.segment_id)
                store.submit(session, rater, item.public_id, 1)
        with database.unit() as session:
            rater = store.rater_for_token(session, token)
            assert store.next_item(session, rater) is None
            assert store.progress(session, rater) == {"rated": 7, "queued": 0}
    assert order == [ids[1], ids[3], ids[5], ids[2], ids[0], ids[4], ids[6]]
    assert_counters_match_items(run_sql, db_url)


def test_ratings_per_clip_is_shared_between_raters(app, run_sql, db_url):
    client, raters = app(n_segments=4, ratings_per_clip=2, raters=("ann", "bo", "cy"))
    served = {name: [] for name in raters}
    active = list(raters)
    while active:  # round robin, each rater answering as they go
        for name in list(active):
            nxt = _next(client, raters[name])
            if nxt["clip_id"] is None:
                assert nxt["progress"]["queued"] == 0
                active.remove(name)
                continue
            served[name].append(nxt["clip_id"])
            _answer(client, raters[name], nxt["clip_id"], rating=2)
    per_clip = run_sql(
        db_url,
        "SELECT segment_id, count(DISTINCT rater_id) FROM queue_items WHERE status = 'rated' "
        "GROUP BY segment_id",
    )
    assert sorted(n for _segment, n in per_clip) == [2, 2, 2, 2]
    assert sum(len(clips) for clips in served.values()) == 8
    assert_counters_match_items(run_sql, db_url)


def test_a_shown_clip_holds_its_place_for_the_lease_then_others_get_it(app, run_sql, db_url):
    client, raters = app(n_segments=2, raters=("ann", "bo", "cy"))
    segment = _segments_of(run_sql, db_url)
    ann = _next(client, raters["ann"])
    bo = _next(client, raters["bo"])
    assert segment(ann["clip_id"]) != segment(bo["clip_id"])
    cy = _next(client, raters["cy"])  # both clips are held: nothing for cy now
    assert cy["clip_id"] is None and cy["progress"] == {"rated": 0, "queued": 0}
    again = _next(client, raters["ann"])  # asking again is the same clip, the lease unchanged
    assert again["clip_id"] == ann["clip_id"] and again["progress"]["queued"] == 1
    _expire_leases(run_sql, db_url)
    cy = _next(client, raters["cy"])  # the leases ran out: cy gets the first clip, ann's
    assert segment(cy["clip_id"]) == segment(ann["clip_id"])
    assert cy["progress"] == {"rated": 0, "queued": 2}
    assert_counters_match_items(run_sql, db_url)
    assert _next(client, raters["ann"])["clip_id"] == ann["clip_id"]  # still ann's to answer
    _answer(client, raters["ann"], ann["clip_id"], rating=3)
    _answer(client, raters["cy"], cy["clip_id"], rating=0)
    cy = _next(client, raters["cy"])  # bo's lease ran out too
    assert segment(cy["clip_id"]) == segment(bo["clip_id"])
    _answer(client, raters["bo"], bo["clip_id"], rating=1)  # bo may still answer his
    _answer(client, raters["cy"], cy["clip_id"], rating=1)
    assert_counters_match_items(run_sql, db_url)
    for name in raters:  # each clip has its rating (ann's two): nothing left for anyone
        nxt = _next(client, raters[name])
        assert nxt["clip_id"] is None and nxt["progress"]["queued"] == 0


def test_skip_gives_the_place_back_and_undo_takes_it_again(app, run_sql, db_url):
    client, raters = app(n_segments=2, raters=("ann", "bo"))
    segment = _segments_of(run_sql, db_url)
    first = _next(client, raters["ann"])["clip_id"]
    second = _next(client, raters["bo"])["clip_id"]
    _answer(client, raters["ann"], first, skip=True)
    assert _next(client, raters["ann"])["clip_id"] is None  # ann has seen both she may see
    _answer(client, raters["bo"], second, rating=2)
    again = _next(client, raters["bo"])["clip_id"]
    assert segment(again) == segment(first)  # the skipped clip went back to the queue
    undone = client.post("/api/undo", headers=raters["ann"]).json()
    assert undone["undone"] and undone["clip_id"] == first
    assert undone["progress"] == {"rated": 0, "queued": 1}
    assert_counters_match_items(run_sql, db_url)
    (row,) = run_sql(db_url, "SELECT lease_count, is_open FROM clip_slots WHERE lease_count > 0")
    assert row[0] == 2 and not row[1]  # shown to both again: over its one place, closed
    _answer(client, raters["ann"], first, rating=1)
    undone = client.post("/api/undo", headers=raters["ann"]).json()  # a rating, withdrawn
    assert undone["clip_id"] == first
    assert_counters_match_items(run_sql, db_url)


def test_two_requests_of_one_rater_at_once_get_one_clip(db_url, run_sql):
    tokens = seed_demo(db_url, DemoSpec(n_segments=6))
    with open_database(db_url) as database:

        def ask(barrier: threading.Barrier, picked: list[str]) -> None:
            barrier.wait()
            with database.unit() as session:
                rater = store.rater_for_token(session, tokens["alice"])
                picked.append(store.next_item(session, rater).public_id)

        for _round in range(3):
            barrier, picked = threading.Barrier(2), []
            threads = [threading.Thread(target=ask, args=(barrier, picked)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(picked) == 2 and picked[0] == picked[1]
            with database.unit() as session:
                rater = store.rater_for_token(session, tokens["alice"])
                store.submit(session, rater, picked[0], 1)
    assert run_sql(db_url, "SELECT count(*) FROM queue_items") == [(3,)]
    assert_counters_match_items(run_sql, db_url)


def test_a_request_that_loses_the_race_takes_the_winners_item(db_url, run_sql, monkeypatch):
    tokens = seed_demo(db_url, DemoSpec(n_segments=3))
    real_pick = queue.pick_fresh

    def pick_after_a_winner(conn, rater):
        """The other request of this rater inserts its item between our pick and our insert."""
        segment_id = real_pick(conn, rater)
        winner = {"public_id": "f" * 32, "rater_id": rater.id, "segment_id": segment_id}
        conn.execute(insert(QueueItem).values(**winner, shown_at=1.0))
        return segment_id

    monkeypatch.setattr(queue, "pick_fresh", pick_after_a_winner)
    with open_database(db_url) as database, database.unit() as session:
        rater = store.rater_for_token(session, tokens["alice"])
        item = store.next_item(session, rater)
        assert item.public_id == "f" * 32
        assert store.progress(session, rater) == {"rated": 0, "queued": 3}
    assert run_sql(db_url, "SELECT public_id, status FROM queue_items") == [("f" * 32, "shown")]
    assert_counters_match_items(run_sql, db_url)


def _history(db_url: str) -> None:
    """Ratings, skips, an undo, repeats and open leases, by two raters (ratings_per_clip 2)."""
    tokens = seed_demo(db_url, DemoSpec(n_segments=6, ratings_per_clip=2, repeat_every=2))
    with open_database(db_url) as database:
        for name, answers in (("alice", [1, None, 2, 3, 0]), ("bob", [2, 2, None])):
            for value in answers:
                with database.unit() as session:
                    rater = store.rater_for_token(session, tokens[name])
                    item = store.next_item(session, rater)
                    store.submit(session, rater, item.public_id, value, skip=value is None)
            with database.unit() as session:  # leave one clip shown (a lease), undo once
                rater = store.rater_for_token(session, tokens[name])
                store.next_item(session, rater)
                if name == "bob":
                    store.undo_last(session, rater)


@pytest.mark.parametrize("older", ["0003", BASELINE_REVISION])
def test_an_upgrade_computes_the_counters_of_an_existing_database(db_url, run_sql, older):
    _history(db_url)
    counters = "SELECT * FROM clip_slots ORDER BY segment_id"
    items = "SELECT id, status, lease_until FROM queue_items ORDER BY id"
    kept = run_sql(db_url, counters), run_sql(db_url, items)
    assert_counters_match_items(run_sql, db_url)
    open_total = run_sql(db_url, "SELECT sum(open_clips) FROM queue_counters")
    # back to the revision before the counters (or to before migrations, as create_all made it)
    command.downgrade(alembic_config(url=db_url), older)
    if older == BASELINE_REVISION:
        run_sql(db_url, "DROP TABLE alembic_version")
    upgrade = upgrade_database(db_url)
    assert upgrade.adopted == (older == BASELINE_REVISION)
    assert (run_sql(db_url, counters), run_sql(db_url, items)) == kept
    assert run_sql(db_url, "SELECT sum(open_clips) FROM queue_counters") == open_total
    assert_counters_match_items(run_sql, db_url)
    # and the queue goes on from there: everyone can finish, nothing is left behind
    with open_database(db_url) as database:
        names = [n for (n,) in run_sql(db_url, "SELECT name FROM raters ORDER BY id")]
        for name in names:
            while True:
                with database.unit() as session:
                    rater = store.find_rater(session, store.get_project(session), name)
                    item = store.next_item(session, rater)
                    if item is None:
                        assert store.progress(session, rater)["queued"] == 0
                        break
                    store.submit(session, rater, item.public_id, 1)
    assert_counters_match_items(run_sql, db_url)
    left = "SELECT count(*) FROM queue_items WHERE status IN ('pending', 'shown')"
    assert run_sql(db_url, left) == [(0,)]


def _progress_from_scratch(run_sql, db: str, rater: str) -> dict[str, int]:
    """``progress`` counted from the items alone: answered; shown and pending; and the clips
    with a place left (rated + leased < ratings_per_clip) the rater has no first-time item for."""
    ((rated, waiting, fresh),) = run_sql(
        db,
        "SELECT "
        "(SELECT count(*) FROM queue_items q WHERE q.rater_id = r.id "
        "  AND q.status IN ('rated', 'skipped')), "
        "(SELECT count(*) FROM queue_items q WHERE q.rater_id = r.id "
        "  AND q.status IN ('shown', 'pending')), "
        "(SELECT count(*) FROM segments s WHERE s.project_id = r.project_id "
        "  AND s.reference_level IS NULL "
        "  AND (SELECT count(*) FROM queue_items q WHERE q.segment_id = s.id "
        "       AND q.is_repeat = false AND (q.status = 'rated' OR q.lease_until IS NOT NULL)) "
        "      < p.ratings_per_clip "
        "  AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.segment_id = s.id "
        "       AND q.rater_id = r.id AND q.is_repeat = false)) "
        "FROM raters r JOIN projects p ON p.id = r.project_id WHERE r.name = :name",
        name=rater,
    )
    return {"rated": int(rated), "queued": int(waiting) + int(fresh)}


def test_counters_and_progress_equal_a_count_from_scratch_after_random_actions(
    app, run_sql, db_url
):
    """Several raters next, rate, skip, undo and let leases run out, in a random order: after
    every request the counters equal what the items say, and the progress a request answers
    equals a count from scratch (0 queued exactly when no clip is given)."""
    names = ("ann", "bo", "cy", "di")
    client, raters = app(n_segments=9, ratings_per_clip=2, repeat_every=2, raters=names)
    rng = np.random.default_rng(7)
    current: dict[str, str | None] = dict.fromkeys(names)
    steps = {"next": 0, "rate": 0, "skip": 0, "undo": 0, "expire": 0}
    for _step in range(160):
        name = names[int(rng.integers(len(names)))]
        action = rng.choice(["next", "next", "rate", "rate", "skip", "undo", "expire"])
        if action in ("rate", "skip") and current[name] is None:
            action = "next"
        steps[str(action)] += 1
        if action == "expire":
            _expire_leases(run_sql, db_url)
            continue
        if action in ("rate", "skip"):
            answer = {"skip": True} if action == "skip" else {"rating": int(rng.integers(4))}
            _answer(client, raters[name], current[name], **answer)
            current[name] = None
        else:
            path = "/api/next" if action == "next" else "/api/undo"
            method = client.get if action == "next" else client.post
            body = method(path, headers=raters[name]).json()
            current[name] = body["clip_id"]
            assert body["progress"] == _progress_from_scratch(run_sql, db_url, name)
            if action == "next":
                assert (body["clip_id"] is None) == (body["progress"]["queued"] == 0)
        assert_counters_match_items(run_sql, db_url)
    assert min(steps.values()) >= 10, steps  # every kind of action happened, many times
