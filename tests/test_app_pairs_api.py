"""The comparison API: answers are committed before 201, retries and conflicts are
deterministic, refused requests store nothing, and a rater only ever reaches their own pairs."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.app.server import create_app

OPERATOR = "operator-secret-token"


@pytest.fixture
def app_env(db_url, tmp_path, run_sql):
    """``build(asks="both", pairs=3)`` -> (client, tokens, snapshot): a demo project with that
    many queued pairs; ``snapshot()`` is everything a pair request could change."""
    clients: list[TestClient] = []

    def build(asks: str = "both", pairs: int = 3, **spec):
        tokens = seed_demo(db_url, DemoSpec(**{"n_segments": 0, "references": False, **spec}))
        with open_database(db_url) as database, database.unit() as session:
            project = store.get_project(session)
            store.set_asks(session, project, "both")
            segs = synthetic_segments(2 * pairs, 10, 4, 2, seed=1)
            if pairs:
                first, second = segs.subset(range(pairs)), segs.subset(range(pairs, 2 * pairs))
                store.add_pairs(session, project, first, second, source_tag="test")
            store.set_asks(session, project, asks)
        client = TestClient(create_app(db_url, tmp_path / "clips", OPERATOR))
        client.__enter__()
        clients.append(client)
        return client, tokens, snapshot

    def snapshot() -> tuple:
        return (
            run_sql(db_url, "SELECT * FROM pair_answers ORDER BY id"),
            run_sql(db_url, "SELECT id, status, shown_at FROM pair_items ORDER BY id"),
        )

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_next_answer_and_progress(app_env, db_url, run_sql):
    client, tokens, _snapshot = app_env()
    h = auth(tokens["alice"])
    nxt = client.get("/api/pairs/next", headers=h).json()
    assert nxt["progress"] == {"answered": 0, "queued": 3}
    assert nxt["asks"] == "both" and nxt["rater"] == "alice" and nxt["fps"] == 10
    assert nxt["left_url"] == f"/pair-clips/{nxt['pair_id']}-left.mp4"
    assert nxt["right_url"] == f"/pair-clips/{nxt['pair_id']}-right.mp4"
    assert client.get("/api/pairs/next", headers=h).json()["pair_id"] == nxt["pair_id"]

    body = {"pair_id": nxt["pair_id"], "choice": "right"}
    answer = client.post("/api/pairs/answers", json=body, headers=h)
    assert answer.status_code == 201 and answer.json()["created"] is True
    stored = run_sql(db_url, "SELECT id, choice, status FROM pair_answers")
    assert stored == [(answer.json()["answer_id"], "right", "rated")]  # committed before 201
    following = client.get("/api/pairs/next", headers=h).json()
    assert following["pair_id"] != nxt["pair_id"]
    assert following["progress"] == {"answered": 1, "queued": 2}
    asks = client.get("/api/asks", headers=h).json()
    assert asks == {"asks": "both", "project": "demo", "rater": "alice"}


def test_duplicates_conflicts_and_refusals_store_nothing(app_env):
    client, tokens, snapshot = app_env()
    h, bob = auth(tokens["alice"]), auth(tokens["bob"])
    pair = client.get("/api/pairs/next", headers=h).json()["pair_id"]
    first = client.post("/api/pairs/answers", json={"pair_id": pair, "choice": "equal"}, headers=h)
    same = client.post("/api/pairs/answers", json={"pair_id": pair, "choice": "equal"}, headers=h)
    assert first.status_code == 201 and same.status_code == 200
    assert same.json() == {"answer_id": first.json()["answer_id"], "created": False}
    before = snapshot()
    refused = [
        ({"pair_id": pair, "choice": "left"}, h, 409, "already answered equal; undo"),
        ({"pair_id": pair, "choice": "left"}, bob, 404, "unknown pair_id"),
        ({"pair_id": "0" * 32, "choice": "left"}, h, 404, "unknown pair_id"),
        ({"pair_id": pair, "choice": "better"}, h, 422, "choice must be left, right or equal"),
        ({"pair_id": pair, "choice": "left", "skip": True}, h, 422, "either a choice or skip"),
        ({"pair_id": pair}, h, 422, "choice is required"),
    ]
    for body, headers, status, detail in refused:
        response = client.post("/api/pairs/answers", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert detail in response.json()["detail"] and "\n" not in response.json()["detail"]
    malformed = [
        {"pair_id": pair, "choice": 1},
        {"pair_id": pair, "skip": "yes"},
        {"pair_id": pair, "choice": "left", "extra": 1},
        {"choice": "left"},
    ]
    for body in malformed:
        assert client.post("/api/pairs/answers", json=body, headers=h).status_code == 422, body
    no_token = client.post("/api/pairs/answers", json={"pair_id": pair, "choice": "left"})
    assert no_token.status_code == 401
    assert client.get("/api/pairs/next").status_code == 401
    assert client.post("/api/pairs/undo", headers=auth("not-a-token")).status_code == 401
    assert snapshot() == before


def test_undo_shows_the_pair_again_and_a_new_answer_is_a_new_row(app_env, db_url, run_sql):
    client, tokens, _snapshot = app_env(pairs=2)
    h = auth(tokens["alice"])
    pair = client.get("/api/pairs/next", headers=h).json()["pair_id"]
    client.post("/api/pairs/answers", json={"pair_id": pair, "choice": "left"}, headers=h)
    undone = client.post("/api/pairs/undo", headers=h).json()
    assert undone["undone"] is True and undone["pair_id"] == pair
    assert undone["progress"] == {"answered": 0, "queued": 2}
    again = client.post("/api/pairs/answers", json={"pair_id": pair, "skip": True}, headers=h)
    assert again.status_code == 201
    rows = run_sql(db_url, "SELECT choice, status, undoes_id FROM pair_answers ORDER BY id")
    assert rows == [("left", "rated", None), (None, "undone", 1), (None, "skipped", None)]
    client.post("/api/pairs/undo", headers=h)
    client.post("/api/pairs/undo", headers=h)  # nothing left in force to undo
    assert client.post("/api/pairs/undo", headers=h).json()["undone"] is False


def test_clips_of_a_pair_are_served_to_anyone_holding_its_id(app_env):
    client, tokens, _snapshot = app_env(pairs=1)
    nxt = client.get("/api/pairs/next", headers=auth(tokens["alice"])).json()
    left, right = client.get(nxt["left_url"]), client.get(nxt["right_url"])
    assert left.status_code == right.status_code == 200
    assert left.headers["content-type"] == "video/mp4" and left.content != right.content
    pair = nxt["pair_id"]
    for bad in (f"{pair}-middle.mp4", f"{pair}.mp4", "0" * 32 + "-left.mp4", "..%2Fx-left.mp4"):
        assert client.get(f"/pair-clips/{bad}").status_code == 404, bad


def test_a_project_asking_for_ratings_only_refuses_pairs(app_env):
    client, tokens, snapshot = app_env(asks="ratings", pairs=0)
    h = auth(tokens["alice"])
    assert client.get("/api/asks", headers=h).json()["asks"] == "ratings"
    refused = client.get("/api/pairs/next", headers=h)
    assert refused.status_code == 409 and "asks for ratings only" in refused.json()["detail"]
    assert snapshot() == ([], [])


def test_the_page_is_served_with_the_strict_policy_and_no_inline_script(app_env):
    client, _tokens, _snapshot = app_env(pairs=0)
    page = client.get("/pairs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts == [(' src="/static/pairs.js"', "")]
    assert "style=" not in page.text and re.search(r"<[^>]+\son\w+=", page.text) is None
    assert client.get("/static/pairs.js").status_code == 200
