"""Online training with people as the rating source: the loop publishes queries to the app's
queue, a rater answers them over the JSON API while the policy keeps training, and every
answer ends up in the run's feedback dataset (with the rater's name). Live DeepMind Control
queries carry simulator states, so people see the robot, not a bar chart."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import torch
from fastapi.testclient import TestClient

from ratingrl.app import store
from ratingrl.app.db import SegmentRow, make_engine, make_sessionmaker
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.export import export_ratings
from ratingrl.app.render import bar_frames
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource
from ratingrl.feedback.io import load_rated
from ratingrl.rl.train import train

from .test_rl_online import TINY
from .test_states import DMC_ONLINE, _decode

torch.set_num_threads(1)


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


def test_online_training_collects_ratings_from_the_app(tmp_path):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    tokens = seed_demo(
        db,
        DemoSpec(
            env_id="Pendulum-v1",
            n_segments=0,
            clip_length=TINY.horizon,
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
        config = replace(TINY, method="rbrl", total_steps=900, budget=20, per_round=10)
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


def test_live_dmc_queries_reach_the_app_with_states_and_show_the_robot(tmp_path):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    spec = DemoSpec(
        env_id="dmc/cartpole-balance",
        n_segments=0,
        clip_length=DMC_ONLINE.horizon,
        size=48,
        raters=("alice",),
        references=False,
    )
    tokens = seed_demo(db, spec)
    source = AppRatingSource(db)
    try:  # nobody rates during the run: it queues its queries and trains on
        train(DMC_ONLINE, tmp_path / "run", source=source, progress=False)
    finally:
        source.close()
    sessions = make_sessionmaker(make_engine(db))
    with sessions() as session:
        queued = session.query(SegmentRow).all()
        assert len(queued) == DMC_ONLINE.budget
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
    assert segments.states is not None and segments.states.shape == (1, DMC_ONLINE.horizon, 4)
    frames = _decode(video.content, tmp_path)
    chart = bar_frames(segments.obs[0], segments.acts[0], frames.shape[2], frames.shape[1])
    assert frames.shape[0] == DMC_ONLINE.horizon and frames.std() > 5
    assert np.abs(frames.astype(int) - chart.astype(int)).mean() > 20  # the robot, not bars
