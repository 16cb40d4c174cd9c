"""The rating app's JSON API: ratings are committed before 201, bad input changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.server import ServerConfig, create_app

OPERATOR = "operator-secret-token"


def _snapshot(run_sql, db: str) -> tuple:
    """Everything stored that a request could change, read through a separate connection."""
    ratings = run_sql(db, "SELECT * FROM ratings ORDER BY id")
    items = run_sql(db, "SELECT id, status, shown_at FROM queue_items ORDER BY id")
    return ratings, items


@pytest.fixture
def env(tmp_path, db_url):
    """``env(**spec)`` -> a client of a seeded app, the raters' tokens and the database URL
    (SQLite, and PostgreSQL in a second copy of each test)."""

    def build(**spec):
        db = db_url
        tokens = seed_demo(db, DemoSpec(**spec))
        app = create_app(db, tmp_path / "clips", OPERATOR, ServerConfig())
        client = TestClient(app)
        client.__enter__()
        built.append(client)
        return client, tokens, db

    built: list[TestClient] = []
    yield build
    for client in built:
        client.__exit__(None, None, None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_next_then_rate_is_committed_before_201(env, run_sql):
    client, tokens, db = env()
    nxt = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert nxt["scale"] == {"n": 4, "names": ["bad", "poor", "good", "excellent"]}
    assert nxt["progress"] == {"rated": 0, "queued": 20}
    assert nxt["video_url"] == f"/clips/{nxt['clip_id']}.mp4"
    again = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert again["clip_id"] == nxt["clip_id"]  # a reload shows the same clip

    response = client.post(
        "/api/ratings", json={"clip_id": nxt["clip_id"], "rating": 2}, headers=auth(tokens["alice"])
    )
    assert response.status_code == 201
    # a separate connection sees it at once
    rows = run_sql(db, "SELECT value, status, rater_id, shown_at, answered_at FROM ratings")
    assert len(rows) == 1 and rows[0][:2] == (2, "rated")
    assert rows[0][3] <= rows[0][4]
    assert response.json()["created"] is True
    following = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert following["clip_id"] != nxt["clip_id"]
    assert following["progress"] == {"rated": 1, "queued": 19}


def test_duplicate_and_conflicting_submissions_are_deterministic(env, run_sql):
    client, tokens, db = env()
    h = auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    first = client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=h)
    same = client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=h)
    assert first.status_code == 201 and same.status_code == 200
    assert same.json()["created"] is False
    assert same.json()["rating_id"] == first.json()["rating_id"]
    before = _snapshot(run_sql, db)
    other = client.post("/api/ratings", json={"clip_id": clip, "rating": 3}, headers=h)
    assert other.status_code == 409
    skip = client.post("/api/ratings", json={"clip_id": clip, "skip": True}, headers=h)
    assert skip.status_code == 409
    assert _snapshot(run_sql, db) == before


def test_bad_input_is_refused_and_changes_nothing(env, run_sql):
    client, tokens, db = env()
    h = auth(tokens["alice"])
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    bob_clip = client.get("/api/next", headers=auth(tokens["bob"])).json()["clip_id"]
    before = _snapshot(run_sql, db)
    cases = [
        (401, {"clip_id": clip, "rating": 1}, auth("not-a-token")),
        (401, {"clip_id": clip, "rating": 1}, {}),
        (422, {"clip_id": clip, "rating": 4}, h),
        (422, {"clip_id": clip, "rating": -1}, h),
        (422, {"clip_id": clip, "rating": 2.5}, h),
        (422, {"clip_id": clip, "rating": "2"}, h),
        (422, {"clip_id": clip, "rating": True}, h),
        (422, {"clip_id": clip}, h),
        (422, {"clip_id": clip, "rating": 1, "skip": True}, h),
        (422, {"clip_id": clip, "rating": 1, "extra": 1}, h),
        (404, {"clip_id": "0" * 32, "rating": 1}, h),
        (404, {"clip_id": bob_clip, "rating": 1}, h),  # raters see only their own queue
        (404, {"clip_id": "../../etc/passwd", "rating": 1}, h),
    ]
    for status, body, headers in cases:
        response = client.post("/api/ratings", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
    malformed = client.post(
        "/api/ratings", content=b'{"clip_id": ', headers={**h, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    big = client.post(
        "/api/ratings",
        content=b'{"clip_id": "' + b"a" * 100_000 + b'", "rating": 1}',
        headers={**h, "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert client.get("/api/next", headers=auth("nope")).status_code == 401
    assert _snapshot(run_sql, db)[0] == before[0]
    assert _snapshot(run_sql, db)[1] == before[1]


def test_skip_and_undo_append_rows_and_show_the_clip_again(env, run_sql):
    client, tokens, db = env(n_segments=3)
    h = auth(tokens["alice"])
    a = client.get("/api/next", headers=h).json()["clip_id"]
    assert (
        client.post("/api/ratings", json={"clip_id": a, "rating": 3}, headers=h).status_code == 201
    )
    b = client.get("/api/next", headers=h).json()["clip_id"]
    assert (
        client.post("/api/ratings", json={"clip_id": b, "skip": True}, headers=h).status_code == 201
    )
    undo = client.post("/api/undo", headers=h).json()
    assert undo["undone"] and undo["clip_id"] == b
    undo = client.post("/api/undo", headers=h).json()
    assert undo["undone"] and undo["clip_id"] == a
    assert client.get("/api/next", headers=h).json()["clip_id"] in (a, b)
    assert (
        client.post("/api/ratings", json={"clip_id": a, "rating": 0}, headers=h).status_code == 201
    )
    statuses = [r[0] for r in run_sql(db, "SELECT status FROM ratings ORDER BY id")]
    assert statuses == ["rated", "skipped", "undone", "undone", "rated"]  # append-only history


def test_hidden_repeats_and_agreement_for_the_operator(env):
    client, tokens, _db = env(n_segments=6, ratings_per_clip=2, repeat_every=2)
    for name, offset in (("alice", 0), ("bob", 1)):
        h = auth(tokens[name])
        seen: list[str] = []
        while (nxt := client.get("/api/next", headers=h).json())["clip_id"]:
            seen.append(nxt["clip_id"])
            value = (len(seen) + offset) % 4
            response = client.post(
                "/api/ratings", json={"clip_id": nxt["clip_id"], "rating": value}, headers=h
            )
            assert response.status_code == 201
        assert len(seen) == len(set(seen)) > 6  # repeats come with fresh ids
    assert client.get("/api/operator/stats", headers=auth(tokens["alice"])).status_code == 401
    stats = client.get("/api/operator/stats", headers=auth(OPERATOR)).json()["projects"][0]
    assert stats["multi_rated_clips"] == 6 and stats["ratings"] == 12
    assert stats["krippendorff_alpha_ordinal"] is not None
    for rater in stats["raters"]:
        assert rater["rated"] == 6 and rater["repeats_rated"] >= 1
        assert rater["self_consistency"]["n"] == rater["repeats_rated"]
        assert rater["median_seconds"] is not None


def test_clips_are_served_from_the_cache_folder_only(env, tmp_path):
    client, tokens, _db = env()
    h = auth(tokens["alice"])
    url = client.get("/api/next", headers=h).json()["video_url"]
    video = client.get(url)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    cached = list((tmp_path / "clips").glob("*.mp4"))
    assert len(cached) == 1
    assert client.get(url).content == video.content
    refs = client.get("/api/references", headers=h).json()["references"]
    assert [r["name"] for r in refs] == ["bad", "poor", "good", "excellent"]
    assert client.get(refs[0]["video_url"]).status_code == 200
    for bad in ("/clips/..%2F..%2Fratings.db", "/clips/ref-zz.mp4", "/clips/" + "0" * 32 + ".mp4"):
        assert client.get(bad).status_code == 404


def test_pages_are_served_with_a_strict_content_security_policy(env):
    client, _tokens, _db = env()
    for page in ("/", "/operator"):
        response = client.get(page)
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_export_is_a_feedback_dataset_with_raters_and_times(env, tmp_path):
    import pyarrow.parquet as pq

    from ratingrl.app import store
    from ratingrl.app.db import make_engine, make_sessionmaker
    from ratingrl.app.export import export_ratings
    from ratingrl.feedback.io import load_rated

    client, tokens, db = env(n_segments=4)
    for name in ("alice", "bob"):
        h = auth(tokens[name])
        for value in (0, 3):
            clip = client.get("/api/next", headers=h).json()["clip_id"]
            client.post("/api/ratings", json={"clip_id": clip, "rating": value}, headers=h)
    engine = make_engine(db)
    with make_sessionmaker(engine)() as session:
        n = export_ratings(session, store.get_project(session), tmp_path / "out.parquet")
    engine.dispose()
    assert n == 4
    data = load_rated(tmp_path / "out.parquet")
    assert sorted(data.ratings.tolist()) == [0, 0, 3, 3]
    assert sorted(data.rater.tolist()) == ["alice", "alice", "bob", "bob"]
    table = pq.read_table(tmp_path / "out.parquet")
    for column in ("rater_id", "clip_id", "shown_at", "answered_at", "is_repeat"):
        assert column in table.column_names
    assert np.all(table.column("answered_at").to_numpy() >= table.column("shown_at").to_numpy())


def test_an_export_trains_the_rater_model_which_reports_each_rater(env, tmp_path):
    from typer.testing import CliRunner

    from ratingrl.app import store
    from ratingrl.app.db import make_engine, make_sessionmaker
    from ratingrl.app.export import export_ratings
    from ratingrl.cli import app as ratingrl_cli

    client, tokens, db = env(n_segments=24)  # each clip is rated once: 12 each
    for name, shift in (("alice", 0), ("bob", 1)):
        h = auth(tokens[name])
        for i in range(12):
            clip = client.get("/api/next", headers=h).json()["clip_id"]
            rating = min(i % 4 + shift, 3)  # bob is the more lenient
            client.post("/api/ratings", json={"clip_id": clip, "rating": rating}, headers=h)
    engine = make_engine(db)
    with make_sessionmaker(engine)() as session:
        export_ratings(session, store.get_project(session), tmp_path / "out.parquet")
    engine.dispose()
    args = ["reward", "train", "--data", str(tmp_path / "out.parquet"), "--method", "raters"]
    args += ["--out", str(tmp_path / "r.pt"), "--epochs", "3", "--ensemble", "1"]
    result = CliRunner().invoke(ratingrl_cli, args)
    assert result.exit_code == 0, result.output
    assert "rater alice: 12 labels, 4 classes, weight" in result.output
    assert "rater bob: 12 labels, 4 classes, weight" in result.output
    assert (tmp_path / "r.pt").exists()
