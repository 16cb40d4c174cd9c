"""The operator dashboard's API (``GET /api/operator/dashboard``): exact numbers on a small
hand-made project -- rating distributions, ratings over time and the current rate, Krippendorff's
alpha (now and over time), the rater-by-rater agreement matrix, repeat self-consistency and the
careless flag, the queue -- on SQLite and PostgreSQL; refusals are one line with a status; what
a poll returns does not grow with the ratings.

Three raters rate the same four clips (``ratings_per_clip=4``) with a hidden repeat after every
rating. Their first ratings, by clip (levels 0-3)::

    alice  0 1 2 3      repeats: the same level
    bob    0 1 3 3      repeats: the same level (his clip 2 was 0, undone, then 3)
    carol  3 0 0 1      repeats: two levels off, (first + 2) % 4

A fourth rater, dave, skips clip 0 and leaves clip 1 on screen.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ratingrl.app.agreement import krippendorff_alpha_ordinal
from ratingrl.app.dashboard import BUCKETS_S, MAX_POINTS, DashboardSettings
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.server import create_app

OPERATOR = "operator-secret-token"
FIRST = {"alice": [0, 1, 2, 3], "bob": [0, 1, 3, 3], "carol": [3, 0, 0, 1]}
REPEAT = {"alice": lambda v: v, "bob": lambda v: v, "carol": lambda v: (v + 2) % 4}
PATH = "/api/operator/dashboard"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client_of(tmp_path, db_url):
    """``client_of(spec)`` -> (a client of a server for the seeded ``spec``, tokens, db url)."""
    clients: list[TestClient] = []

    def build(spec: DemoSpec):
        tokens = seed_demo(db_url, spec)
        client = TestClient(create_app(db_url, tmp_path / "clips", OPERATOR))
        client.__enter__()
        clients.append(client)
        return client, tokens, db_url

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def _item(run_sql, db: str, clip_id: str) -> tuple[int, bool]:
    """The clip's index among the project's queued clips (0-3), and whether it is a repeat."""
    (segment, repeat), = run_sql(
        db, "SELECT segment_id, is_repeat FROM queue_items WHERE public_id = :p", p=clip_id
    )  # fmt: skip
    order = [s for (s,) in run_sql(db, "SELECT segment_id FROM clip_slots ORDER BY segment_id")]
    return order.index(segment), bool(repeat)


def _rate(client, run_sql, db, token: str, name: str, fresh_only: bool = False) -> None:
    """``name`` answers their queue as the table says (``fresh_only``: stop before a repeat)."""
    h = auth(token)
    while (clip := client.get("/api/next", headers=h).json()["clip_id"]) is not None:
        index, repeat = _item(run_sql, db, clip)
        if repeat and fresh_only:
            return
        value = REPEAT[name](FIRST[name][index]) if repeat else FIRST[name][index]
        if name == "bob" and index == 2 and not repeat:  # a slip, undone and corrected
            body = {"clip_id": clip, "rating": 0}
            assert client.post("/api/ratings", json=body, headers=h).status_code == 201
            assert client.post("/api/undo", headers=h).json()["clip_id"] == clip
        body = {"clip_id": clip, "rating": value}
        assert client.post("/api/ratings", json=body, headers=h).status_code == 201


@pytest.fixture
def study(client_of, run_sql):
    """The project of the module's docstring, rated; yields (client, db, {name: token})."""
    spec = DemoSpec(
        n_segments=4,
        ratings_per_clip=4,
        repeat_every=1,
        raters=("alice", "bob", "carol", "dave"),
    )
    client, tokens, db = client_of(spec)
    dave = auth(tokens["dave"])
    skipped = client.get("/api/next", headers=dave).json()["clip_id"]
    assert client.post("/api/ratings", json={"clip_id": skipped, "skip": True}, headers=dave)
    assert client.get("/api/next", headers=dave).json()["clip_id"] != skipped  # left on screen
    return client, db, tokens


def test_queue_counts_hidden_repeats_pending_and_due(study, run_sql):
    client, db, tokens = study
    _rate(client, run_sql, db, tokens["alice"], "alice", fresh_only=True)
    q = client.get(PATH, headers=auth(OPERATOR)).json()["queue"]
    # alice rated 4 clips, each scheduling a repeat 3 answers later: the first is due now
    # (she is looking at it), so 1 shown repeat and 3 pending, none of them due yet
    assert q == {
        "clips": 4, "clips_open": 4, "shown": 1, "rated": 4, "skipped": 1,
        "repeats_shown": 1, "repeats_rated": 0, "repeats_pending": 3, "repeats_due": 0,
    }  # fmt: skip
    alice = client.get(PATH, headers=auth(OPERATOR)).json()["raters"][0]
    assert alice["queue"]["repeats_pending"] == 3 and alice["queue"]["shown"] == 0
    # her repeat on screen is answered: the next pending one (due after 5 answers) is due now
    h = auth(tokens["alice"])
    shown = client.get("/api/next", headers=h).json()["clip_id"]
    index, repeat = _item(run_sql, db, shown)
    assert repeat
    client.post("/api/ratings", json={"clip_id": shown, "rating": FIRST["alice"][index]}, headers=h)
    q = client.get(PATH, headers=auth(OPERATOR)).json()["queue"]
    assert (q["repeats_shown"], q["repeats_rated"], q["repeats_pending"], q["repeats_due"]) == (
        0, 1, 3, 1,
    )  # fmt: skip


def _set_times(run_sql, db: str, now: float) -> dict[int, float]:
    """Ratings rows get known times: 100 s apart ending 10 minutes ago, carol's repeats 30 s
    ago (inside the 5-minute rate window). Returns {row id: time}."""
    rows = run_sql(
        db,
        "SELECT r.id, r.is_repeat, q.name FROM ratings r JOIN raters q ON q.id = r.rater_id "
        "ORDER BY r.id",
    )
    times = {}
    for k, (row, repeat, name) in enumerate(rows):
        times[row] = now - 30 if (name == "carol" and repeat) else now - 600 - 100 * (len(rows) - k)
        run_sql(db, "UPDATE ratings SET answered_at = :t WHERE id = :i", t=times[row], i=row)
    return times


def _current(run_sql, db: str) -> list[tuple]:
    """(rater, clip index, value, is_repeat, row id) of each item's current rating."""
    return run_sql(
        db,
        "SELECT q.name, s.segment_id, r.value, r.is_repeat, r.id FROM ratings r "
        "JOIN raters q ON q.id = r.rater_id JOIN clip_slots s ON s.segment_id = r.segment_id "
        "WHERE r.id IN (SELECT MAX(id) FROM ratings GROUP BY item_id) AND r.status = 'rated'",
    )


def test_dashboard_numbers_of_a_hand_made_study(study, run_sql):
    client, db, tokens = study
    for name in ("alice", "bob", "carol"):
        _rate(client, run_sql, db, tokens[name], name)
    times = _set_times(run_sql, db, time.time())
    assert client.get(PATH, headers=auth(tokens["alice"])).status_code == 401
    assert client.get(PATH).status_code == 401
    d = client.get(PATH, headers=auth(OPERATOR)).json()
    assert d["projects"] == ["demo"] and d["project"] == "demo"
    assert d["settings"] == {"careless_below": 0.5, "min_repeats": 5, "rate_window_s": 300.0}
    raters = {r["name"]: r for r in d["raters"]}
    assert list(raters) == ["alice", "bob", "carol", "dave"]

    # distributions: levels given first-time (bob's undone 0 is not one of them)
    assert raters["alice"]["distribution"] == [1, 1, 1, 1]
    assert raters["bob"]["distribution"] == [1, 1, 0, 2]
    assert raters["carol"]["distribution"] == [2, 1, 0, 1]
    assert raters["dave"]["distribution"] == [0, 0, 0, 0]
    assert d["distribution"] == [4, 3, 1, 4]
    for name in ("alice", "bob", "carol"):
        assert (raters[name]["rated"], raters[name]["repeats_rated"]) == (4, 4)

    # self-consistency on hidden repeats; nobody is careless with the default 5 repeats
    assert raters["alice"]["consistency"] == {
        "repeats": 4, "exact": 1.0, "within_one": 1.0, "mean_abs_diff": 0.0,
    }  # fmt: skip
    assert raters["carol"]["consistency"] == {
        "repeats": 4, "exact": 0.0, "within_one": 0.0, "mean_abs_diff": 2.0,
    }  # fmt: skip
    assert raters["dave"]["consistency"]["repeats"] == 0
    assert [r["careless"] for r in d["raters"]] == [False] * 4
    strict = client.get(PATH, params={"min_repeats": 4}, headers=auth(OPERATOR)).json()
    assert [r["careless"] for r in strict["raters"]] == [False, False, True, False]
    lenient = {"min_repeats": 4, "careless_below": 0.0}
    lenient = client.get(PATH, params=lenient, headers=auth(OPERATOR)).json()
    assert not any(r["careless"] for r in lenient["raters"])

    # the agreement matrix: symmetric, nothing on the diagonal or with dave
    m = d["agreement"]["matrix"]
    assert m[0][1] == m[1][0] == {"n": 4, "exact": 0.75, "within_one": 1.0, "mean_abs_diff": 0.25}
    assert m[0][2] == {"n": 4, "exact": 0.0, "within_one": 0.25, "mean_abs_diff": 2.0}
    assert m[1][2] == {"n": 4, "exact": 0.0, "within_one": 0.25, "mean_abs_diff": 2.25}
    assert all(m[i][i] is None and m[i][3] is None and m[3][i] is None for i in range(4))

    # alpha on the four shared clips, as the stats page reports it
    table = np.array([FIRST["alice"], FIRST["bob"], FIRST["carol"]], dtype=float)
    alpha = krippendorff_alpha_ordinal(table)
    assert d["agreement"]["alpha"] == pytest.approx(alpha, abs=1e-12)
    # by hand: level totals 4 3 1 4, D_o = 293.5 / 12, D_e = 2 * 1572 / 132
    assert alpha == pytest.approx(-169 / 6288, abs=1e-12)
    stats = client.get("/api/operator/stats", headers=auth(OPERATOR)).json()["projects"][0]
    assert stats["krippendorff_alpha_ordinal"] == pytest.approx(alpha, abs=1e-12)
    assert d["agreement"]["clips"] == 4

    # over time: cumulative ratings per rater at each point, alpha of what was given by then
    current = _current(run_sql, db)
    points = d["timeline"]["times"]
    assert len(points) <= MAX_POINTS + 1 and d["timeline"]["bucket_s"] in BUCKETS_S
    assert points[0] <= min(times[row[4]] for row in current) and points == sorted(points)
    before = [
        [row for row in current if times[row[4]] < t or j == len(points) - 1]
        for j, t in enumerate(points)
    ]
    assert d["timeline"]["total"] == [len(rows) for rows in before]
    for name, rater in raters.items():
        assert rater["timeline"] == [sum(r[0] == name for r in rows) for rows in before]
    assert d["timeline"]["total"][-1] == 24
    clips = sorted({row[1] for row in current})
    for j, rows in enumerate(before):
        t = np.full((3, 4), np.nan)
        for name, clip, value, repeat, _ in rows:
            if not repeat:
                t[["alice", "bob", "carol"].index(name), clips.index(clip)] = value
        shared = int(np.sum((~np.isnan(t)).sum(axis=0) >= 2))
        point = d["agreement"]["over_time"][j]
        assert point["t"] == points[j] and point["clips"] == shared
        expected = krippendorff_alpha_ordinal(t) if shared else math.nan
        assert point["alpha"] == (None if math.isnan(expected) else pytest.approx(expected))

    # the current rate: carol's 4 repeats were given in the last 5 minutes
    assert raters["carol"]["rate_per_min"] == pytest.approx(4 / 5)
    assert raters["alice"]["rate_per_min"] == 0.0
    assert d["rate_per_min"] == pytest.approx(4 / 5)
    q = d["queue"]
    assert q == {
        "clips": 4, "clips_open": 3, "shown": 1, "rated": 12, "skipped": 1,
        "repeats_shown": 0, "repeats_rated": 12, "repeats_pending": 0, "repeats_due": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "status", "detail"),
    [
        ({"project": "nope"}, 404, "no project named 'nope'"),
        ({"careless_below": 2}, 422, "careless_below must be in [0, 1], got 2.0"),
        ({"careless_below": "nan"}, 422, "careless_below must be in [0, 1], got nan"),
        ({"min_repeats": 0}, 422, "min_repeats must be an integer in 1..10000, got 0"),
        ({"min_repeats": "x"}, 422, "query.min_repeats: Input should be a valid integer"),
        ({"rate_window_s": "inf"}, 422, "rate_window_s must be in 10..86400, got inf"),
    ],
)
def test_refusals_are_one_line_with_a_status(client_of, query, status, detail):
    client, _tokens, _db = client_of(DemoSpec(n_segments=2))
    response = client.get(PATH, params=query, headers=auth(OPERATOR))
    assert response.status_code == status
    assert response.json()["detail"].startswith(detail) and "\n" not in response.json()["detail"]


def test_an_empty_database_and_a_second_project(client_of, tmp_path, db_url):
    client = TestClient(create_app(db_url, tmp_path / "clips", OPERATOR))
    with client:
        assert client.get(PATH, headers=auth(OPERATOR)).json() == {"projects": [], "project": None}
    client, _tokens, db = client_of(DemoSpec(name="first", n_segments=2))
    seed_demo(db, DemoSpec(name="second", n_segments=3, raters=("zoe",)))
    d = client.get(PATH, headers=auth(OPERATOR)).json()
    assert d["projects"] == ["first", "second"] and d["project"] == "first"
    d = client.get(PATH, params={"project": "second"}, headers=auth(OPERATOR)).json()
    assert d["project"] == "second" and [r["name"] for r in d["raters"]] == ["zoe"]
    assert d["queue"]["clips"] == 3 and d["timeline"]["total"][-1] == 0
    assert d["agreement"]["alpha"] is None and d["agreement"]["matrix"] == [[None]]


def test_settings_are_checked_where_they_are_made():
    with pytest.raises(ValueError, match="min_repeats must be an integer"):
        DashboardSettings(min_repeats=2.5)  # type: ignore[arg-type]
    rule = DashboardSettings()
    assert rule.is_careless(5, 0.4) and not rule.is_careless(4, 0.0)  # too few repeats to judge
    assert not rule.is_careless(5, 0.5) and not rule.is_careless(9, None)


def _statements(db: str, name: str, now: float) -> tuple[int, dict]:
    """How many SQL statements one dashboard of project ``name`` runs, and the dashboard."""
    from sqlalchemy import event

    from ratingrl.app import store
    from ratingrl.app.dashboard import dashboard
    from ratingrl.app.schema import open_database

    seen: list[str] = []
    with open_database(db) as database, database.unit(write=False) as session:
        project = store.get_project(session, name)
        event.listen(database.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        out = dashboard(session, project, now=now)
    return len(seen), out


def test_a_poll_is_a_fixed_number_of_statements_and_points(client_of, run_sql):
    """However many raters, ratings and days: the same statements, at most MAX_POINTS + 1
    points in time (one statement per part, never one per rater or per rating)."""
    names = ("a", "b", "c", "d", "e", "f")
    client, tokens, db = client_of(DemoSpec(name="big", n_segments=12, raters=names,
                                            ratings_per_clip=3, repeat_every=2))  # fmt: skip
    seed_demo(db, DemoSpec(name="small", n_segments=2, raters=("x",)))
    for name in names:
        h = auth(tokens[name])
        while (clip := client.get("/api/next", headers=h).json()["clip_id"]) is not None:
            client.post("/api/ratings", json={"clip_id": clip, "rating": 1}, headers=h)
    now = time.time()
    run_sql(db, "UPDATE ratings SET answered_at = :now - 30 * 86400 * id / 100.0", now=now)
    small, _ = _statements(db, "small", now)
    big, d = _statements(db, "big", now)
    assert big == small
    assert d["timeline"]["bucket_s"] == 43200 and len(d["timeline"]["times"]) <= MAX_POINTS + 1
    assert d["timeline"]["total"][-1] == sum(r["rated"] + r["repeats_rated"] for r in d["raters"])
    assert d["timeline"]["total"][-1] == 36 + sum(r["repeats_rated"] for r in d["raters"]) > 36
    assert len(d["agreement"]["over_time"]) == len(d["timeline"]["times"])
    assert all(p["alpha"] is None for p in d["agreement"]["over_time"])  # all 1s: no variation
    assert d["agreement"]["clips"] == 12
