"""A training run's reports in the app: what the store keeps, what the operator API returns
(exact numbers), the evaluation clip the server renders, resumes, several runs per project,
and the migration that adds the tables (0004 -> 0005 keeps every existing row)."""

from __future__ import annotations

import numpy as np
import pytest
from alembic import command
from fastapi.testclient import TestClient

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.errors import AppError
from ratingrl.app.render import bar_frames
from ratingrl.app.run_reporter import AppRunReporter
from ratingrl.app.schema import alembic_config, head_revision, open_database, upgrade_database
from ratingrl.app.server import create_app
from ratingrl.feedback.rollouts import Episode

OPERATOR = {"Authorization": "Bearer operator-token"}
CONFIG = {"env_id": "synthetic/bars", "algo": "sac", "method": "rbrl", "total_steps": 900,
          "eval_every": 300}  # fmt: skip


def _episode(steps: int, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        rng.normal(size=(steps, 4)).astype(np.float32),
        rng.uniform(-1, 1, size=(steps, 2)).astype(np.float32),
        np.full(steps, -1.0, np.float32),
        episode_id=0,
    )


def _evaluation(steps: int, true: float, learned: float | None) -> dict:
    def stats(mean: float) -> dict:
        return {"mean": mean, "std": 1.0, "ci95": [mean - 2.0, mean + 2.0], "episodes": [mean]}

    return {
        "env_steps": steps,
        "true_return": stats(true),
        "learned_return": None if learned is None else stats(learned),
        "episode_length": 100.0,
    }


def _report_a_run(db: str, key: str = "/runs/a", name: str = "a") -> AppRunReporter:
    """Two rounds of 10 labels: 4 arrive in round 1, 9 more in round 2 (one withdrawn);
    two reward updates and two evaluations, the second with a 250-step episode."""
    reporter = AppRunReporter(db, name=name)
    reporter.on_start(key, CONFIG, 0)
    reporter.on_labels(0, [], 0)
    reporter.on_labels(250, [10], 0)
    reporter.on_labels(260, [10], 4)
    reporter.on_update(260, 4, {"loss": 0.75, "epochs": 5, "steps": 20, "note": "text"})
    reporter.on_evaluation(_evaluation(300, -900.0, None), _episode(100))
    reporter.on_labels(500, [10, 10], 4)
    reporter.on_labels(520, [10, 10], 14)
    reporter.on_labels(530, [10, 10], 13)
    reporter.on_update(530, 13, {"loss": 0.5, "epochs": 5, "steps": 40, "val_score": float("nan")})
    reporter.on_evaluation(_evaluation(600, -700.0, 3.5), _episode(250, seed=1))
    return reporter


@pytest.fixture
def app_db(db_url):
    seed_demo(db_url, DemoSpec(n_segments=0, raters=("alice",), references=False, size=48))
    return db_url


def test_a_runs_reports_come_back_from_the_operator_api(tmp_path, app_db, decode_mp4):
    reporter = _report_a_run(app_db)
    run_id = reporter.run_id
    with TestClient(create_app(app_db, tmp_path / "clips", "operator-token")) as client:
        listed = client.get("/api/operator/runs", headers=OPERATOR)
        assert listed.status_code == 200
        [summary] = listed.json()["runs"]
        assert summary["run_id"] == run_id and summary["name"] == "a"
        assert (summary["status"], summary["env_steps"]) == ("running", 600)
        assert (summary["algo"], summary["method"], summary["env_id"]) == (
            "sac", "rbrl", "synthetic/bars",
        )  # fmt: skip
        assert (summary["total_steps"], summary["eval_every"]) == (900, 300)

        got = client.get(f"/api/operator/runs/{run_id}", headers=OPERATOR).json()
        assert got["run"] == summary
        assert got["rounds"] == [
            {"round": 1, "env_steps": 250, "requested": 10, "collected": 4},
            {"round": 2, "env_steps": 500, "requested": 10, "collected": 9},
        ]
        assert [(e["env_steps"], e["labels"]) for e in got["labels"]] == [
            (0, 0), (250, 0), (260, 4), (500, 4), (520, 14), (530, 13),
        ]  # fmt: skip
        assert got["updates"] == [
            {"env_steps": 260, "labels": 4, "loss": 0.75, "epochs": 5, "steps": 20},
            {"env_steps": 530, "labels": 13, "loss": 0.5, "epochs": 5, "steps": 40,
             "val_score": None},
        ]  # fmt: skip
        first, second = got["evaluations"]
        assert first["env_steps"] == 300 and first["learned_return"] is None
        assert first["true_return"]["mean"] == -900.0
        assert second["true_return"]["ci95"] == [-702.0, -698.0]
        assert second["learned_return"]["mean"] == 3.5 and second["episode_length"] == 100.0
        clip = got["clip"]
        assert clip["env_steps"] == 600 and clip["frames"] == 200 and clip["states"] is False

        video = client.get(clip["url"])  # no header: the random id is the capability
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        frames = decode_mp4(video.content, tmp_path)
        episode = _episode(250, seed=1)
        bars = bar_frames(episode.obs[:200], episode.acts[:200], 48, 48)
        assert frames.shape == (200, 48, 48, 3)
        assert np.abs(frames.astype(int) - bars.astype(int)).mean() < 8  # the episode's bars

        # refused: no operator token, a rater's token, an unknown run, a made-up clip id
        assert client.get("/api/operator/runs").status_code == 401
        assert client.get(f"/api/operator/runs/{run_id}").status_code == 401
        assert client.get(f"/api/operator/runs/{'0' * 32}", headers=OPERATOR).status_code == 404
        assert client.get(f"/run-clips/{'0' * 32}.mp4").status_code == 404
        assert client.get("/run-clips/..%2Fratings.db").status_code == 404

        # the next evaluation replaces the clip: the old id is gone, the run finishes
        reporter.on_evaluation(_evaluation(900, -650.0, 4.0), _episode(30, seed=2))
        reporter.on_evaluation(_evaluation(900, -640.0, 4.5), _episode(30, seed=3))  # final
        reporter.on_finish("finished")
        again = client.get(f"/api/operator/runs/{run_id}", headers=OPERATOR).json()
        assert again["clip"]["frames"] == 30 and again["clip"]["url"] != clip["url"]
        assert client.get(clip["url"]).status_code == 404
        assert again["run"]["status"] == "finished"
        returns = [(e["env_steps"], e["true_return"]["mean"]) for e in again["evaluations"]]
        assert returns == [(300, -900.0), (600, -700.0), (900, -640.0)]
    reporter.close()


def test_several_runs_latest_first_and_a_resume_drops_what_it_undid(tmp_path, app_db):
    first = _report_a_run(app_db, key="/runs/a", name="a")
    second = AppRunReporter(app_db, name="b")
    second.on_start("/runs/b", {**CONFIG, "method": "r4"}, 0)
    second.on_labels(250, [5], 2)
    # run a resumes from its checkpoint at step 520: the reports after it are undone
    first.on_finish("stopped")
    resumed = AppRunReporter(app_db, name="a")
    resumed.on_start("/runs/a", CONFIG, 520)
    assert resumed.run_id == first.run_id
    with TestClient(create_app(app_db, tmp_path / "clips", "operator-token")) as client:
        runs = client.get("/api/operator/runs", headers=OPERATOR).json()["runs"]
        assert [(r["name"], r["method"], r["status"]) for r in runs] == [
            ("b", "r4", "running"), ("a", "rbrl", "running"),
        ]  # fmt: skip
        project = runs[0]["project"]
        by_project = client.get(f"/api/operator/runs?project={project}", headers=OPERATOR)
        assert [r["name"] for r in by_project.json()["runs"]] == ["b", "a"]
        missing = client.get("/api/operator/runs?project=nope", headers=OPERATOR)
        assert missing.status_code == 404
        got = client.get(f"/api/operator/runs/{first.run_id}", headers=OPERATOR).json()
        assert [e["env_steps"] for e in got["labels"]] == [0, 250, 260, 500, 520]
        assert [u["env_steps"] for u in got["updates"]] == [260]
        assert [e["env_steps"] for e in got["evaluations"]] == [300]
        assert got["rounds"][-1] == {"round": 2, "env_steps": 500, "requested": 10, "collected": 10}
    for reporter in (first, second, resumed):
        reporter.close()


def test_bad_reports_are_refused_with_the_field_named(app_db):
    with open_database(app_db) as database, database.unit() as session:
        project = store.get_project(session)
        with pytest.raises(AppError, match="env_id"):
            store.start_run(session, project, "k", "n", {"algo": "sac"}, 0)
        run = store.start_run(session, project, "k", "n", CONFIG, 0)
        with pytest.raises(AppError, match="kind must be one of"):
            store.add_run_event(session, run.id, "loss", 1, {})
        with pytest.raises(AppError, match="status must be one of"):
            store.finish_run(session, run.id, "crashed")
        with pytest.raises(AppError, match="same length"):
            store.set_run_clip(session, run.id, 1, np.zeros((3, 2)), np.zeros((2, 1)), None)
    with pytest.raises(ValueError, match="clip_frames must be >= 1, got 0"):
        AppRunReporter(app_db, clip_frames=0)


def test_migration_0005_adds_the_run_tables_and_keeps_every_row(
    make_db_url, run_sql, rate_small_project
):
    db = make_db_url()
    command.upgrade(alembic_config(url=db), "0004")
    with _at(db) as s:  # the store of today writes the tables 0004 has
        rate_small_project(s, "p", (3, 1))
    tables = ("projects", "segments", "raters", "queue_items", "ratings", "clip_slots")
    before = {t: run_sql(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables}
    assert run_sql(db, "SELECT version_num FROM alembic_version") == [("0004",)]
    upgrade = upgrade_database(db)
    assert (upgrade.before, upgrade.after) == ("0004", "0005") == ("0004", head_revision())
    assert "from revision 0004 to 0005" in upgrade.message
    assert {t: run_sql(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables} == before
    assert run_sql(db, "SELECT count(*) FROM runs") == [(0,)]
    reporter = _report_a_run(db)  # the new tables work on the upgraded database
    reporter.close()
    assert run_sql(db, "SELECT count(*) FROM run_events") == [(10,)]
    command.downgrade(alembic_config(url=db), "0004")  # and go away again, rows kept
    assert {t: run_sql(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables} == before
    assert not {"runs", "run_events"} & _tables(db)


def _tables(db: str) -> set[str]:
    from sqlalchemy import inspect

    from ratingrl.app.db import make_engine

    engine = make_engine(db)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _at(db: str):
    """A committing session on ``db`` at whatever revision it is (no upgrade)."""
    from contextlib import contextmanager

    from ratingrl.app.db import make_engine, make_sessionmaker

    @contextmanager
    def unit():
        engine = make_engine(db)
        try:
            with make_sessionmaker(engine)() as session:
                yield session
                session.commit()
        finally:
            engine.dispose()

    return unit()
