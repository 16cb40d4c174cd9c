"""AppRatingSource, agreement statistics, the operator CLI and MuJoCo clip replay."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ratingrl.app.agreement import krippendorff_alpha_ordinal, self_consistency
from ratingrl.app.db import make_engine, make_sessionmaker
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.export import export_ratings
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource
from ratingrl.app.store import get_project
from ratingrl.cli.app import app_cli
from ratingrl.feedback.io import load_rated, save_segments
from ratingrl.feedback.sources import RatingSource
from ratingrl.feedback.store import FeedbackStore

NAN = np.nan


def test_alpha_matches_krippendorffs_published_example():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability", reliability data:
    # 3 observers x 15 units; the `krippendorff` package gives the same 0.8067 (ordinal).
    data = [
        [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
        [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
        [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
    ]
    assert krippendorff_alpha_ordinal(data) == pytest.approx(0.8067214199, abs=1e-9)


def test_alpha_edge_cases_and_perfect_agreement():
    assert krippendorff_alpha_ordinal([[0, 1, 2, 3], [0, 1, 2, 3]]) == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha_ordinal([[1, 1], [1, 1]]))  # no variation: undefined
    assert np.isnan(krippendorff_alpha_ordinal([[0, NAN], [NAN, 1]]))  # nothing pairable
    # Systematic disagreement scores below zero.
    assert krippendorff_alpha_ordinal([[0, 3, 0, 3], [3, 0, 3, 0]]) < 0


def test_self_consistency():
    out = self_consistency(np.array([0, 1, 2, 3]), np.array([0, 2, 2, 1]), 4)
    assert out == {"n": 4, "exact": 0.5, "within_one": 0.75, "mean_abs_diff": 0.75}


def test_app_rating_source_publishes_and_collects(tmp_path, db_url):
    db = db_url
    tokens = seed_demo(db, DemoSpec(n_segments=0, raters=("alice",), references=False))
    source = AppRatingSource(db)
    assert isinstance(source, RatingSource)
    assert source.scale.names == ("bad", "poor", "good", "excellent")
    assert source.collect(timeout=0) is None
    segments = synthetic_segments(3, 10, 4, 2, seed=5)
    source.request(segments, priority=np.array([0.0, 2.0, 1.0]))
    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    h = {"Authorization": f"Bearer {tokens['alice']}"}
    for value in (3, 1):
        clip = client.get("/api/next", headers=h).json()["clip_id"]
        assert client.post("/api/ratings", json={"clip_id": clip, "rating": value}, headers=h)
    rated = source.collect(timeout=1.0)
    assert rated is not None and rated.ratings.tolist() == [3, 1]
    # Highest priority first: segment 1 then segment 2.
    np.testing.assert_allclose(rated.segments.obs, segments.obs[[1, 2]], rtol=1e-6)
    assert rated.rater.tolist() == ["alice", "alice"]
    assert source.collect(timeout=0) is None  # each rating is handed over once
    source.close()


def test_undo_after_collect_is_reported_once_and_undo_before_collect_never_arrives(
    tmp_path, db_url
):
    db = db_url
    tokens = seed_demo(db, DemoSpec(n_segments=0, raters=("alice",), references=False))
    source = AppRatingSource(db)
    source.request(synthetic_segments(4, 10, 4, 2, seed=5))
    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    h = {"Authorization": f"Bearer {tokens['alice']}"}

    def rate(value: int) -> str:
        clip = client.get("/api/next", headers=h).json()["clip_id"]
        answer = client.post("/api/ratings", json={"clip_id": clip, "rating": value}, headers=h)
        return str(answer.json()["rating_id"])

    def undo() -> None:
        assert client.post("/api/undo", headers=h).json()["undone"]

    kept, early = rate(1), rate(2)
    undo()  # ``early`` is withdrawn before anyone collected it
    first = source.collect(timeout=0)
    assert first.label_id.tolist() == [kept] and first.ratings.tolist() == [1]
    assert source.retracted() == [early]  # reported, but the loop never held it
    store = FeedbackStore(tmp_path / "feedback.parquet")
    store.add(first)
    assert store.retract({early}) == 0
    changed = rate(3)  # the same clip again: a new rating with a new id
    assert changed != early
    second = source.collect(timeout=0)
    assert second.label_id.tolist() == [changed]
    store.add(second)
    undo()  # ``changed`` was collected already: withdrawn now
    assert source.retracted() == [changed]
    assert source.retracted() == []  # each withdrawal is reported once
    assert store.retract({changed}) == 1
    assert load_rated(store.path).label_id.tolist() == [kept]
    # a skip carries no label: undoing it retracts nothing
    clip = client.get("/api/next", headers=h).json()["clip_id"]
    client.post("/api/ratings", json={"clip_id": clip, "skip": True}, headers=h)
    undo()
    assert source.retracted() == []
    # a source made later (a resumed run) still hears of every withdrawal in the project
    later = AppRatingSource(db)
    assert later.retracted() == [early, changed]
    later.close()
    # the export leaves undone ratings out and names ratings the way the run does
    with make_sessionmaker(make_engine(db))() as session:
        export_ratings(session, get_project(session), tmp_path / "export.parquet")
    assert load_rated(tmp_path / "export.parquet").label_id.tolist() == [kept]
    source.close()


def test_operator_cli_create_add_rate_export(tmp_path, db_url):
    runner = CliRunner()
    db = db_url
    made = runner.invoke(
        app_cli,
        ["create-project", "--name", "p", "--env", "synthetic/bars", "--clip-length", "8",
         "--scale", "bad,ok,good", "--db", db],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    pool = tmp_path / "pool.parquet"
    save_segments(synthetic_segments(6, 12, 4, 2, seed=1), pool)
    added = runner.invoke(
        app_cli, ["add-segments", "--from", str(pool), "--limit", "4", "--db", db]
    )
    assert added.exit_code == 0 and "queued 4" in added.output, added.output
    ref = runner.invoke(
        app_cli, ["add-segments", "--from", str(pool), "--reference-level", "2", "--db", db]
    )
    assert ref.exit_code == 0, ref.output
    rater = runner.invoke(app_cli, ["add-rater", "carol", "--db", db])
    assert rater.exit_code == 0, rater.output
    token = rater.stdout.strip().splitlines()[0]
    dup = runner.invoke(app_cli, ["add-rater", "carol", "--db", db])
    assert dup.exit_code == 2 and "exists" in dup.output
    empty = runner.invoke(app_cli, ["export", "--out", str(tmp_path / "x.parquet"), "--db", db])
    assert empty.exit_code == 2 and "no ratings" in empty.output

    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    h = {"Authorization": f"Bearer {token}"}
    clip = client.get("/api/next", headers=h).json()
    assert clip["scale"]["names"] == ["bad", "ok", "good"]
    client.post("/api/ratings", json={"clip_id": clip["clip_id"], "rating": 2}, headers=h)
    out = tmp_path / "ratings.parquet"
    exported = runner.invoke(app_cli, ["export", "--out", str(out), "--db", db])
    assert exported.exit_code == 0, exported.output
    data = load_rated(out)
    assert data.ratings.tolist() == [2] and data.rater.tolist() == ["carol"]
    assert data.segments.horizon == 8


def test_halfcheetah_clip_replays_states_from_observations():
    from ratingrl.app.render import ClipRenderer, ClipSpec, encode_mp4
    from ratingrl.feedback.envs import make_env

    env = make_env("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    rows, acts = [], []
    for _ in range(4):
        action = np.full(6, 0.5)
        rows.append(obs)
        acts.append(action)
        obs, *_ = env.step(action)
    env.close()
    renderer = ClipRenderer()
    try:
        frames = renderer.frames(
            ClipSpec(
                "a" * 32, "HalfCheetah-v5", np.array(rows), np.array(acts), width=64, height=64
            )
        )
    finally:
        renderer.close()
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # a rendered scene, not a blank image
    assert not np.array_equal(frames[0], frames[-1])  # the cheetah moved
    assert encode_mp4(frames, 10)[4:8] == b"ftyp"
