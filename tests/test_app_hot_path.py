"""The rating server's hot path: a group commit pays for savepoints only when a write failed
after changing something; a request reads its rater and project fresh from the token, so an
operator's change shows at the next request; the answers keep their shape; and two requests of
one rater at once still get one clip through the server's own path (the rater's row locked as
the token is read, on PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading

from fastapi.testclient import TestClient
from sqlalchemy import text

from ratingrl.app import server, store
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.gate import GroupCommitGate
from ratingrl.app.schema import open_database
from ratingrl.app.services import _as_locked_rater

OPERATOR = "operator-secret-token"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_app_for(db_url: str, tmp_path):  # type: ignore[no-untyped-def]
    return server.create_app(db_url, tmp_path / "clips", OPERATOR)


def _batch(gate: GroupCommitGate, jobs: list[tuple]) -> list:
    """Run ``jobs`` ((fn, *args) each) as one batch: they queue while a first job holds the
    writer, then share a transaction. Returns their outcomes (a result or the exception)."""
    release = threading.Event()

    async def scenario() -> list:
        busy = asyncio.ensure_future(gate.run(lambda _session: release.wait(5)))
        await asyncio.sleep(0.05)
        batch = [asyncio.ensure_future(gate.run(*job)) for job in jobs]
        await asyncio.sleep(0.05)
        release.set()
        await busy
        return await asyncio.gather(*batch, return_exceptions=True)

    return asyncio.run(scenario())


def test_a_write_refused_before_it_changed_anything_costs_its_batch_no_rerun(tmp_path, run_sql):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    seed_demo(db, DemoSpec())
    database = open_database(db)
    gate = GroupCommitGate("write", database.unit, max_waiting=100, max_wait_s=30)
    runs: list[str] = []

    def rename(session, old: str, new: str) -> str:
        runs.append(new)
        if new == "refused-first":  # refused before writing: nothing to undo
            raise store.Conflict("no")
        statement = text("UPDATE raters SET name = :new WHERE name = :old")
        session.execute(statement, {"new": new, "old": old})
        if new == "refused-after":  # refused after its write: the batch runs again
            raise store.Conflict("no, after all")
        return new

    try:
        clean = _batch(gate, [(rename, "alice", "ann"), (rename, "bob", "refused-first"),
                              (rename, "ann", "anna")])  # fmt: skip
        assert clean[0] == "ann" and clean[2] == "anna"
        assert isinstance(clean[1], store.Conflict)
        assert runs == ["ann", "refused-first", "anna"]  # each ran once: no savepoints needed
        assert sorted(n for (n,) in run_sql(db, "SELECT name FROM raters")) == ["anna", "bob"]
        runs.clear()
        tainted = _batch(gate, [(rename, "anna", "a1"), (rename, "bob", "refused-after"),
                                (rename, "a1", "a2")])  # fmt: skip
        assert tainted[0] == "a1" and tainted[2] == "a2"
        assert isinstance(tainted[1], store.Conflict)
        # rolled back and run again, each in a savepoint: the refused write is not stored
        assert runs == ["a1", "refused-after", "a1", "refused-after", "a2"]
        assert sorted(n for (n,) in run_sql(db, "SELECT name FROM raters")) == ["a2", "bob"]
        assert gate.batches == 4  # two blockers, two batches (a rerun is not a batch)
    finally:
        gate.close()
        database.close()


def test_a_refused_answer_in_a_shared_commit_leaves_the_others_stored(tmp_path, run_sql):
    """Through the store: a 404 and a 409 among good answers in one group commit."""
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    tokens = seed_demo(db, DemoSpec(raters=("alice", "bob", "cy")))
    database = open_database(db)
    gate = GroupCommitGate("write", database.unit, max_waiting=100, max_wait_s=30)
    try:
        clips = {}
        for name, token in tokens.items():
            clips[name] = _batch(gate, [(_as_locked_rater, token, server._next, ())])[0]["clip_id"]
        answers = [
            (_as_locked_rater, tokens["alice"], store.submit, (clips["alice"], 1, False)),
            (_as_locked_rater, tokens["bob"], store.submit, ("0" * 32, 1, False)),  # not bob's
            (_as_locked_rater, tokens["cy"], store.submit, (clips["cy"], 2, False)),
            (_as_locked_rater, tokens["alice"], store.submit, (clips["alice"], 3, False)),
        ]
        alice, bob, cy, alice_again = _batch(gate, answers)
        assert alice.created and cy.created
        assert isinstance(bob, store.NotFound) and isinstance(alice_again, store.Conflict)
    finally:
        gate.close()
        database.close()
    stored = run_sql(db, "SELECT r.name, t.value FROM ratings t JOIN raters r ON r.id = t.rater_id")
    assert sorted(stored) == [("alice", 1), ("cy", 2)]


def test_an_operators_change_to_the_project_shows_at_the_next_request(db_url, tmp_path, run_sql):
    tokens = seed_demo(db_url, DemoSpec(n_segments=4))
    with TestClient(create_app_for(db_url, tmp_path)) as client:
        h = auth(tokens["alice"])
        assert client.get("/api/asks", headers=h).json()["asks"] == "ratings"
        first = client.get("/api/next", headers=h).json()
        with open_database(db_url) as database, database.unit() as session:
            store.set_asks(session, store.get_project(session), "both")
        run_sql(db_url, "UPDATE projects SET instructions = 'new words', fps = 7")
        assert client.get("/api/asks", headers=h).json()["asks"] == "both"
        again = client.get("/api/next", headers=h).json()
        assert (again["instructions"], again["fps"]) == ("new words", 7)
        assert again["clip_id"] == first["clip_id"]
        assert client.get("/api/pairs/next", headers=h).json()["instructions"] == "new words"


def test_the_answers_keep_their_shape(db_url, tmp_path):
    tokens = seed_demo(db_url, DemoSpec(n_segments=2))
    with TestClient(create_app_for(db_url, tmp_path)) as client:
        h = auth(tokens["alice"])
        nxt = client.get("/api/next", headers=h).json()
        keys = {"clip_id", "video_url", "scale", "fps", "project", "instructions", "rater"}
        assert set(nxt) == keys | {"progress"}
        assert nxt["scale"] == {"n": 4, "names": ["bad", "poor", "good", "excellent"]}
        assert (nxt["fps"], nxt["project"], nxt["rater"]) == (10, "demo", "alice")
        assert nxt["video_url"] == f"/clips/{nxt['clip_id']}.mp4"
        assert nxt["progress"] == {"rated": 0, "queued": 2}
        answer = {"clip_id": nxt["clip_id"], "rating": 3}
        rated = client.post("/api/ratings", json=answer, headers=h)
        assert rated.status_code == 201 and set(rated.json()) == {"rating_id", "created"}
        undo = client.post("/api/undo", headers=h).json()
        assert set(undo) == keys | {"progress", "undone"}
        assert undo["undone"] and undo["clip_id"] == nxt["clip_id"]
        assert undo["progress"] == {"rated": 0, "queued": 2}


def test_two_requests_of_one_rater_at_once_get_one_clip_through_the_server_path(db_url, run_sql):
    tokens = seed_demo(db_url, DemoSpec(n_segments=6))
    with open_database(db_url) as database:

        def ask(barrier: threading.Barrier, picked: list[str]) -> None:
            barrier.wait()
            with database.unit() as session:  # what a GET /api/next runs in its write unit
                payload = _as_locked_rater(session, tokens["alice"], server._next, ())
                picked.append(payload["clip_id"])

        for _round in range(3):
            barrier, picked = threading.Barrier(2), []
            threads = [threading.Thread(target=ask, args=(barrier, picked)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(picked) == 2 and picked[0] == picked[1] is not None
            with database.unit() as session:
                _as_locked_rater(session, tokens["alice"], store.submit, (picked[0], 1, False))
    assert run_sql(db_url, "SELECT count(*) FROM queue_items") == [(3,)]


def test_the_scale_memo_follows_the_stored_names():
    four = store.scale_of('["bad", "poor", "good", "excellent"]')
    assert (four.n, four.names[-1]) == (4, "excellent")
    assert store.scale_of('["no", "yes"]').names == ("no", "yes")
    assert store.scale_of('["bad", "poor", "good", "excellent"]') is four
