"""Hidden repeats: a repeat's file tells nothing, and every scheduled repeat is shown.

A rater could game self-consistency if a repeat were the same file as the clip it repeats; and
a repeat scheduled just before a rater's fresh clips ran out used to wait for ever while
``progress`` still counted it. On SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.render import ClipRenderer, ClipSpec, encode_mp4
from ratingrl.app.server import create_app
from ratingrl.app.store import queue

OPERATOR = "operator-secret-token"
LEASE_S = queue.SHOWN_LEASE_S


@pytest.fixture
def app(tmp_path, db_url):
    """``app(**spec)`` -> a client of a seeded app and the raters' tokens."""
    built: list[TestClient] = []

    def build(**spec):
        tokens = seed_demo(db_url, DemoSpec(**spec))
        client = TestClient(create_app(db_url, tmp_path / "clips", OPERATOR))
        client.__enter__()
        built.append(client)
        return client, tokens

    yield build
    for client in built:
        client.__exit__(None, None, None)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _answer(client, headers, clip: str, **answer) -> None:
    response = client.post("/api/ratings", json={"clip_id": clip, **answer}, headers=headers)
    assert response.status_code == 201, response.text


def _queued_from_scratch(run_sql, db: str, rater: str) -> int:
    """What is left for ``rater``, counted from the items alone (the rule the queue keeps)."""
    mine = "SELECT id FROM raters WHERE name = :rater"
    (waiting,) = run_sql(
        db,
        f"SELECT count(*) FROM queue_items WHERE rater_id = ({mine}) "
        "AND status IN ('shown', 'pending')",
        rater=rater,
    )[0]
    (fresh,) = run_sql(
        db,
        "SELECT count(*) FROM segments s JOIN projects p ON p.id = s.project_id "
        "WHERE s.reference_level IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.segment_id = s.id "
        f"  AND q.rater_id = ({mine}) AND q.is_repeat = false) "
        "AND (SELECT count(*) FROM queue_items q WHERE q.segment_id = s.id "
        "  AND q.is_repeat = false AND (q.status = 'rated' "
        "  OR (q.status = 'shown' AND q.shown_at > :now - :lease))) < p.ratings_per_clip",
        rater=rater,
        now=time.time(),
        lease=LEASE_S,
    )[0]
    return int(waiting) + int(fresh)


def test_a_hidden_repeat_differs_from_its_original_in_url_etag_size_and_bytes(
    app, run_sql, db_url, monkeypatch
):
    # item ids (and so the clips' variants) from a fixed seed: the sizes compared are always
    # the same, not a new draw each run
    rng = np.random.default_rng(7)
    monkeypatch.setattr(queue, "new_public_id", lambda: rng.bytes(16).hex())
    client, tokens = app(n_segments=3, repeat_every=1)  # every rating schedules a repeat
    h = _auth(tokens["alice"])
    urls: list[str] = []
    while (nxt := client.get("/api/next", headers=h).json())["clip_id"] is not None:
        assert nxt["video_url"] == f"/clips/{nxt['clip_id']}.mp4"
        urls.append(nxt["video_url"])
        _answer(client, h, nxt["clip_id"], rating=1)
    items = run_sql(db_url, "SELECT public_id, segment_id, is_repeat FROM queue_items")
    assert len(urls) == len(items) == 6 and sum(bool(r[2]) for r in items) == 3
    files = {}
    for public_id, segment_id, repeat in items:
        response = client.get(f"/clips/{public_id}.mp4")
        assert response.status_code == 200 and response.content[4:8] == b"ftyp"
        assert int(response.headers["content-length"]) == len(response.content)
        files[(segment_id, bool(repeat))] = response
    segments = {segment for segment, _repeat in files}
    for segment in segments:
        original, repeat = files[(segment, False)], files[(segment, True)]
        assert original.url != repeat.url
        assert original.headers["etag"] != repeat.headers["etag"]
        assert original.headers["content-length"] != repeat.headers["content-length"]
        assert original.content != repeat.content
    # nothing in the files sets repeats apart: all six differ, fresh clips among themselves too
    assert len({hashlib.sha256(r.content).digest() for r in files.values()}) == 6
    assert len({r.headers["etag"] for r in files.values()}) == 6
    assert {r.headers["content-type"] for r in files.values()} == {"video/mp4"}
    assert len({r.headers["cache-control"] for r in files.values()}) == 1
    # a clip asked for again is the same file (cached), so reloading tells nothing either
    again = client.get(files[(min(segments), True)].url)
    assert again.content == files[(min(segments), True)].content


def test_every_raters_clip_is_a_variant_that_looks_like_the_clip(tmp_path, decode_mp4):
    segments = synthetic_segments(1, 10, 4, 2, seed=0)
    base = ClipSpec("0" * 32, "synthetic/bars", segments.obs[0], segments.acts[0], width=64,
                    height=64, fps=10)  # fmt: skip
    renderer = ClipRenderer()
    try:
        truth = renderer.frames(base).astype(int)
        plain = renderer.mp4(base)
        variants = [
            renderer.mp4(ClipSpec(**{**vars(base), "key": key, "variant": True}))
            for key in ("a" * 32, "b" * 32, "c" * 32)
        ]
    finally:
        renderer.close()
    assert plain == encode_mp4(truth.astype(np.uint8), 10)  # the plain encoding, as before
    assert len({plain, *variants}) == 4  # each key its own file, none the plain one
    error = np.abs(decode_mp4(plain, tmp_path).astype(int) - truth).mean()
    for mp4 in variants:  # as faithful to the clip as the plain encoding, to within a level
        frames = decode_mp4(mp4, tmp_path).astype(int)
        assert frames.shape == truth.shape
        assert np.abs(frames - truth).mean() < error + 1.0


def test_a_repeat_scheduled_as_fresh_clips_run_out_is_shown_not_stuck(app, run_sql, db_url):
    client, tokens = app(n_segments=3, repeat_every=2)
    h = _auth(tokens["alice"])
    seen = []
    for value in (0, 1, 2):
        nxt = client.get("/api/next", headers=h).json()
        seen.append(nxt["clip_id"])
        _answer(client, h, nxt["clip_id"], rating=value)
    # the repeat scheduled at the 2nd rating waits for 3 more answers; only 1 fresh clip came
    pending = run_sql(db_url, "SELECT status, due_after FROM queue_items WHERE is_repeat = true")
    assert pending == [("pending", 5)]
    nxt = client.get("/api/next", headers=h).json()
    assert nxt["clip_id"] is not None and nxt["clip_id"] not in seen
    assert nxt["progress"] == {"rated": 3, "queued": 1}
    _answer(client, h, nxt["clip_id"], rating=3)
    last = client.get("/api/next", headers=h).json()
    assert last["clip_id"] is None and last["progress"] == {"rated": 4, "queued": 0}
    assert run_sql(db_url, "SELECT status FROM queue_items WHERE is_repeat = true") == [("rated",)]


def test_a_repeat_comes_early_when_other_raters_hold_the_last_clips(app, run_sql, db_url):
    client, tokens = app(n_segments=4, repeat_every=2, raters=("alice", "bob"))
    alice, bob = _auth(tokens["alice"]), _auth(tokens["bob"])
    for value in (0, 1):  # alice rates two clips: a repeat is scheduled
        clip = client.get("/api/next", headers=alice).json()["clip_id"]
        _answer(client, alice, clip, rating=value)
    held = client.get("/api/next", headers=bob).json()  # bob holds clip 3, then rates, holds 4
    _answer(client, bob, held["clip_id"], rating=2)
    assert client.get("/api/next", headers=bob).json()["clip_id"] is not None
    nxt = client.get("/api/next", headers=alice).json()  # no fresh clip free: the repeat
    assert nxt["clip_id"] is not None
    repeat = run_sql(db_url, "SELECT public_id FROM queue_items WHERE is_repeat = true")
    assert repeat == [(nxt["clip_id"],)]
    assert nxt["progress"]["queued"] == 1 == _queued_from_scratch(run_sql, db_url, "alice")


def test_progress_agrees_with_next_to_the_end(app, run_sql, db_url):
    client, tokens = app(
        n_segments=7, ratings_per_clip=2, repeat_every=3, raters=("alice", "bob", "carol")
    )
    rng = np.random.default_rng(3)
    active = ["alice", "bob", "carol"]
    while active:
        name = active[int(rng.integers(len(active)))]
        h = _auth(tokens[name])
        nxt = client.get("/api/next", headers=h).json()
        queued = nxt["progress"]["queued"]
        assert queued == _queued_from_scratch(run_sql, db_url, name), (name, nxt)
        if nxt["clip_id"] is None:
            assert queued == 0
            active.remove(name)
            continue
        assert queued >= 1
        if rng.random() < 0.15:
            _answer(client, h, nxt["clip_id"], skip=True)
        else:
            _answer(client, h, nxt["clip_id"], rating=int(rng.integers(4)))
            if rng.random() < 0.15:  # (an undone skip may show a clip others filled since)
                assert client.post("/api/undo", headers=h).json()["undone"]
    # every scheduled repeat was shown and answered; nothing waits
    open_items = "SELECT count(*) FROM queue_items WHERE status IN ('pending', 'shown')"
    assert run_sql(db_url, open_items) == [(0,)]
    repeats = run_sql(db_url, "SELECT count(*) FROM queue_items WHERE is_repeat = true")[0][0]
    assert repeats >= 3
    rated = run_sql(
        db_url,
        "SELECT segment_id, count(*) FROM queue_items WHERE is_repeat = false AND "
        "status = 'rated' GROUP BY segment_id",
    )
    assert all(n <= 2 for _segment, n in rated)  # ratings_per_clip held throughout
