"""Online training with people as the rating source: the loop publishes queries to the app's
queue, a rater answers them over the JSON API while the policy keeps training, and every
answer ends up in the run's feedback dataset (with the rater's name). Live DeepMind Control
queries carry simulator states, so people see the robot, not a bar chart."""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ratingrl.app import store
from ratingrl.app.db import SegmentRow, make_engine, make_sessionmaker
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.export import export_ratings
from ratingrl.app.render import bar_frames
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource
from ratingrl.feedback.io import load_rated
from ratingrl.rl.run import Run
from ratingrl.rl.train import train


def _rater(client: TestClient, token: str, stop: threading.Event, answered: list[int]) -> None:
    """A person who rates whatever clip the queue shows, cycling through the scale."""
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        clip = client.get("/api/next", headers=headers).json().get("clip_id")
        if clip is None:
            stop.wait(0.05)
            continue
        value = len(answered) % 4
        response = client.post(
            "/api/ratings", json={"clip_id": clip, "rating": value}, headers=headers
        )
        if response.status_code == 201:
            answered.append(value)


@pytest.mark.slow
def test_online_training_collects_ratings_from_the_app(tmp_path, tiny_config, db_url):
    tiny = replace(tiny_config, buffer_size=1000, checkpoint_every=300)
    db = db_url
    tokens = seed_demo(
        db,
        DemoSpec(
            env_id="Pendulum-v1",
            n_segments=0,
            clip_length=tiny.horizon,
            raters=("alice",),
            references=False,
        ),
    )
    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    stop, answered = threading.Event(), []
    person = threading.Thread(target=_rater, args=(client, tokens["alice"], stop, answered))
    person.start()
    source = AppRatingSource(db)
    try:
        config = replace(tiny, method="rbrl", total_steps=900, budget=20, per_round=10)
        summary = train(config, tmp_path / "run", source=source, progress=False)
    finally:
        stop.set()
        person.join(timeout=10)
        source.close()
    feedback = load_rated(tmp_path / "run" / "feedback.parquet")
    assert len(feedback) >= 10 and len(feedback) <= len(answered)
    assert set(feedback.rater.tolist()) == {"alice"}
    assert feedback.ratings.tolist() == answered[: len(feedback)]
    assert summary["labels_used"] == len(feedback)
    assert summary["env_steps"] >= 900


class _LabelIds:
    """The label ids each reward update learned from, read live from a spy updater."""

    def __init__(self, spy) -> None:
        self.spy = spy

    def __iter__(self):
        return iter([labels[0].label_id.tolist() for labels, _ in list(self.spy.calls)])


def _stored_ids(path) -> list[str]:
    """Label ids in the run's feedback file as the loop leaves it (atomic writes)."""
    return load_rated(path).label_id.tolist() if path.exists() else []


def _wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _regretful_rater(
    client: TestClient, token: str, feedback, stop: threading.Event, log: dict
) -> None:
    """Rates every clip; takes back the third rating once the run's reward has learned from it
    (``log["updates"]``: the labels of each update) and waits until the run has dropped it,
    then rates that clip again."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        while not stop.is_set():
            clip = client.get("/api/next", headers=headers).json().get("clip_id")
            if clip is None:
                stop.wait(0.05)
                continue
            answer = client.post(
                "/api/ratings",
                json={"clip_id": clip, "rating": len(log["rated"]) % 4},
                headers=headers,
            )
            log["rated"].append(str(answer.json()["rating_id"]))
            if len(log["rated"]) == 3:
                _take_back(client, headers, feedback, log["rated"][-1], log)
    except Exception as err:  # the test reports it: a thread's exception would vanish
        log["error"] = repr(err)


def _take_back(client: TestClient, headers: dict, feedback, rating_id: str, log: dict) -> None:
    """Undo ``rating_id`` once the reward learned from it; wait until the run has dropped it.

    Waiting for the file alone would race: an undo between the loop's collect and its next
    look at withdrawals removes the rating before any reward learned from it.
    """
    log["learned"] = _wait_for(lambda: any(rating_id in ids for ids in log["updates"]))
    log["collected"] = rating_id in _stored_ids(feedback)
    log["undo_ok"] = client.post("/api/undo", headers=headers).json()["undone"]
    log["undone"] = rating_id
    log["dropped"] = _wait_for(lambda: rating_id not in _stored_ids(feedback))


@pytest.mark.slow
def test_undo_after_collection_retracts_the_rating_from_the_run(
    tmp_path, tiny_config, spy_updater, db_url
):
    tiny = replace(tiny_config, buffer_size=1000, checkpoint_every=300)
    db = db_url
    spec = DemoSpec(
        env_id="Pendulum-v1",
        n_segments=0,
        clip_length=tiny.horizon,
        raters=("alice",),
        references=False,
    )
    tokens = seed_demo(db, spec)
    config = replace(tiny, method="rbrl", total_steps=900, budget=20, per_round=10)
    spy = spy_updater(config)
    updates = _LabelIds(spy)
    feedback = tmp_path / "run" / "feedback.parquet"
    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    stop, log = threading.Event(), {"rated": [], "updates": updates}
    person = threading.Thread(
        target=_regretful_rater, args=(client, tokens["alice"], feedback, stop, log)
    )
    person.start()
    source = AppRatingSource(db)
    try:
        run = Run.create(config, tmp_path / "run", source=source, updater=spy, progress=False)
        summary = run.learn()
    finally:
        stop.set()
        person.join(timeout=10)
        source.close()
    updates = list(updates)
    assert "error" not in log, log["error"]
    assert all(log.get(k) for k in ("learned", "collected", "undo_ok", "dropped")), log
    undone = log["undone"]
    data = load_rated(feedback)
    assert undone not in data.label_id.tolist()
    assert len(set(data.label_id.tolist())) == len(data)
    assert set(data.label_id.tolist()) <= set(log["rated"]) - {undone}
    assert summary["labels_retracted"] == 1 == data.source["labels_retracted"]
    assert summary["labels_used"] == len(data) >= 10
    # the reward learned from the rating, then was trained again on the others without it
    learned = next(i for i, ids in enumerate(updates) if undone in ids)
    after = updates[learned + 1 :]
    assert after and all(undone not in ids for ids in after)
    assert after[0] == [i for i in updates[learned] if i != undone]  # one label fewer
    assert updates[-1] == data.label_id.tolist()
    with open(tmp_path / "run" / "progress.csv") as f:
        retracted = [r["feedback/retracted"] for r in csv.DictReader(f)]
    assert 1.0 in {float(v) for v in retracted if v}  # logged when it happened
    # the app's export agrees: the undone rating is gone there too
    with make_sessionmaker(make_engine(db))() as session:
        export_ratings(session, store.get_project(session), tmp_path / "export.parquet")
    assert undone not in load_rated(tmp_path / "export.parquet").label_id.tolist()


@pytest.mark.slow
def test_live_dmc_queries_reach_the_app_with_states_and_show_the_robot(
    tmp_path, dmc_online_config, decode_mp4, db_url
):
    dmc = dmc_online_config
    db = db_url
    spec = DemoSpec(
        env_id="dmc/cartpole-balance",
        n_segments=0,
        clip_length=dmc.horizon,
        size=48,
        raters=("alice",),
        references=False,
    )
    tokens = seed_demo(db, spec)
    source = AppRatingSource(db)
    try:  # nobody rates during the run: it queues its queries and trains on
        train(dmc, tmp_path / "run", source=source, progress=False)
    finally:
        source.close()
    sessions = make_sessionmaker(make_engine(db))
    with sessions() as session:
        queued = session.query(SegmentRow).all()
        assert len(queued) == dmc.budget
        assert all(row.states is not None for row in queued)

    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    # ``with``: the app's shutdown closes the renderer, freeing the GL context on its own thread
    with TestClient(create_app(db, tmp_path / "clips", "operator-token")) as client:
        clip = client.get("/api/next", headers=headers).json()
        video = client.get(clip["video_url"])
        assert video.status_code == 200
        rated = client.post(
            "/api/ratings", json={"clip_id": clip["clip_id"], "rating": 2}, headers=headers
        )
        assert rated.status_code == 201
    with sessions() as session:
        export_ratings(session, store.get_project(session), tmp_path / "export.parquet")
    segments = load_rated(tmp_path / "export.parquet").segments
    assert segments.states is not None and segments.states.shape == (1, dmc.horizon, 4)
    frames = decode_mp4(video.content, tmp_path)
    chart = bar_frames(segments.obs[0], segments.acts[0], frames.shape[2], frames.shape[1])
    assert frames.shape[0] == dmc.horizon and frames.std() > 5
    assert np.abs(frames.astype(int) - chart.astype(int)).mean() > 20  # the robot, not bars


@pytest.mark.slow
def test_online_training_from_the_app_models_each_rater(tmp_path, tiny_config, db_url, run_sql):
    # method "raters": the app's labels carry who gave them, so the reward learns a scale per
    # person; the run's progress says how many raters the last update told apart
    tiny = replace(tiny_config, buffer_size=1000, checkpoint_every=300)
    spec = DemoSpec(
        env_id="Pendulum-v1",
        n_segments=0,
        clip_length=tiny.horizon,
        raters=("alice", "bob"),
        references=False,
        repeat_every=3,
    )
    tokens = seed_demo(db_url, spec)
    client = TestClient(create_app(db_url, tmp_path / "clips", "operator-token"))
    stop, answered = threading.Event(), {"alice": [], "bob": []}
    people = [
        threading.Thread(target=_rater, args=(client, tokens[name], stop, answered[name]))
        for name in ("alice", "bob")
    ]
    for person in people:
        person.start()
    source = AppRatingSource(db_url, repeats=True)  # as ratingrl train wires it for "raters"
    try:
        config = replace(tiny, method="raters", total_steps=900, budget=24, per_round=12)
        train(config, tmp_path / "run", source=source, progress=False)
    finally:
        stop.set()
        for person in people:
            person.join(timeout=10)
        source.close()
    feedback = load_rated(tmp_path / "run" / "feedback.parquet")
    assert set(feedback.rater.tolist()) == {"alice", "bob"}
    # hidden repeats arrive too, as labels (the rater model weighs raters by them)
    repeats = {str(i) for (i,) in run_sql(db_url, "SELECT id FROM ratings WHERE is_repeat")}
    assert repeats and repeats & set(feedback.label_id.tolist())
    with open(tmp_path / "run" / "progress.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("reward_model/raters")]
    assert rows and float(rows[-1]["reward_model/raters"]) == 2
