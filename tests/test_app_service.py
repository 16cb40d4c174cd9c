"""The app's service layer: statuses as enums, one unit of work per request, error handlers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ratingrl.app import store
from ratingrl.app.db import ItemStatus, QueueItem, RatingRow, RatingStatus, unit_of_work
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.app.server import create_app

OPERATOR = "operator-secret-token"


# A trigger that makes every insert into ``ratings`` fail, in each backend's dialect.
BLOCK_RATINGS = {
    "sqlite": [
        "CREATE TRIGGER no_ratings BEFORE INSERT ON ratings "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION no_ratings() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
        "CREATE TRIGGER no_ratings BEFORE INSERT ON ratings "
        "FOR EACH ROW EXECUTE FUNCTION no_ratings()",
    ],
}
UNBLOCK_RATINGS = {
    "sqlite": ["DROP TRIGGER no_ratings"],
    "postgresql": ["DROP TRIGGER no_ratings ON ratings", "DROP FUNCTION no_ratings()"],
}


@pytest.fixture
def app_db(tmp_path, db_url):
    tokens = seed_demo(db_url, DemoSpec(n_segments=4, repeat_every=1))
    with TestClient(create_app(db_url, tmp_path / "clips", OPERATOR)) as client:
        yield client, tokens, db_url


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rate(client, headers, **answer) -> tuple[str, int]:
    clip = client.get("/api/next", headers=headers).json()["clip_id"]
    response = client.post("/api/ratings", json={"clip_id": clip, **answer}, headers=headers)
    return clip, response.status_code


def test_statuses_are_enums_stored_as_the_same_strings(app_db, run_sql):
    client, tokens, db = app_db
    h = _auth(tokens["alice"])
    assert _rate(client, h, rating=1)[1] == 201  # schedules a hidden repeat (pending)
    assert _rate(client, h, skip=True)[1] == 201
    assert client.post("/api/undo", headers=h).json()["undone"]
    client.get("/api/next", headers=_auth(tokens["bob"]))  # a shown item
    # what is stored: the plain strings the tables have always held
    stored_items = {s for (s,) in run_sql(db, "SELECT status FROM queue_items")}
    stored_rows = [s for (s,) in run_sql(db, "SELECT status FROM ratings ORDER BY id")]
    assert stored_items == {"rated", "pending", "shown"}
    assert stored_rows == ["rated", "skipped", "undone"]
    # what is read: enum members, equal to those strings
    with open_database(db) as database, database.unit() as session:
        items = session.scalars(select(QueueItem).order_by(QueueItem.id)).all()
        rows = session.scalars(select(RatingRow).order_by(RatingRow.id)).all()
    assert all(type(i.status) is ItemStatus for i in items)
    assert {i.status for i in items} == {ItemStatus.RATED, ItemStatus.PENDING, ItemStatus.SHOWN}
    assert [r.status for r in rows] == [
        RatingStatus.RATED,
        RatingStatus.SKIPPED,
        RatingStatus.UNDONE,
    ]
    assert [str(r.status) for r in rows] == stored_rows and f"{rows[0].status}" == "rated"


def test_a_row_written_as_a_bare_string_reads_back_as_its_member(app_db, run_sql):
    client, tokens, db = app_db
    client.get("/api/next", headers=_auth(tokens["alice"]))
    # as an older ratingrl (or another tool) wrote it
    run_sql(db, "UPDATE queue_items SET status = 'skipped'")
    with open_database(db) as database, database.unit() as session:
        assert session.scalar(select(QueueItem.status)) is ItemStatus.SKIPPED


def test_a_failing_unit_of_work_leaves_nothing_half_written(db_url, run_sql):
    url = db_url
    # seed_demo is one unit: the project and its segments are flushed before the bad rater
    with pytest.raises(store.AppError, match="rater name"):
        seed_demo(url, DemoSpec(n_segments=3, raters=("alice", " ")))
    assert run_sql(url, "SELECT count(*) FROM projects") == [(0,)]
    assert run_sql(url, "SELECT count(*) FROM segments") == [(0,)]
    # store functions never commit: without the unit's commit nothing reaches the database
    with open_database(url) as database:
        with database.sessions() as session:
            project = store.create_project(
                session, store.ProjectConfig("p", "synthetic/bars", DemoSpec().scale, 10)
            )
            store.add_segments(session, project, synthetic_segments(2, 10, 4, 2, seed=0))
            assert project.id is not None  # flushed, visible inside the transaction
        assert run_sql(url, "SELECT count(*) FROM projects") == [(0,)]
        with unit_of_work(database.sessions) as session:
            store.create_project(
                session, store.ProjectConfig("p", "synthetic/bars", DemoSpec().scale, 10)
            )
        assert run_sql(url, "SELECT name FROM projects") == [("p",)]


def test_a_request_failing_half_way_is_rolled_back(app_db, run_sql, db_backend):
    client, tokens, db = app_db
    h = _auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    for statement in BLOCK_RATINGS[db_backend]:  # the rating row cannot be written (full disk)
        run_sql(db, statement)
    failing = TestClient(client.app, raise_server_exceptions=False)
    answer = {"clip_id": clip, "rating": 2}
    assert failing.post("/api/ratings", json=answer, headers=h).status_code == 500
    # the item's move to "rated" happened before the failed insert: it was rolled back too
    assert run_sql(db, "SELECT status FROM queue_items") == [("shown",)]
    assert run_sql(db, "SELECT count(*) FROM ratings") == [(0,)]
    for statement in UNBLOCK_RATINGS[db_backend]:
        run_sql(db, statement)
    assert client.post("/api/ratings", json=answer, headers=h).status_code == 201
    assert run_sql(db, "SELECT value, status FROM ratings") == [(2, "rated")]


def test_store_errors_become_statuses_with_a_one_line_json_body(app_db):
    client, tokens, _db = app_db
    h = _auth(tokens["alice"])
    clip, status = _rate(client, h, rating=1)
    assert status == 201
    cases = [
        (404, client.post("/api/ratings", json={"clip_id": "f" * 32, "rating": 1}, headers=h)),
        (409, client.post("/api/ratings", json={"clip_id": clip, "rating": 3}, headers=h)),
        (422, client.post("/api/ratings", json={"clip_id": clip, "rating": 9}, headers=h)),
        (422, client.post("/api/ratings", json={"clip_id": clip}, headers=h)),
        (404, client.get("/api/operator/stats?project=nope", headers=_auth(OPERATOR))),
    ]
    for expected, response in cases:
        assert response.status_code == expected, response.text
        body = response.json()
        assert list(body) == ["detail"] and isinstance(body["detail"], str)
        assert body["detail"] and "\n" not in body["detail"]
        assert response.headers["content-type"] == "application/json"
    assert "unknown clip_id" in cases[0][1].json()["detail"]
    assert "already answered" in cases[1][1].json()["detail"]
    assert "rating" in cases[2][1].json()["detail"]
    assert "nope" in cases[4][1].json()["detail"]
