"""Online training with people as the rating source: the loop publishes queries to the app's
queue, a rater answers them over the JSON API while the policy keeps training, and every
answer ends up in the run's feedback dataset (with the rater's name)."""

from __future__ import annotations

import threading
from dataclasses import replace

import torch
from fastapi.testclient import TestClient

from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource
from ratingrl.feedback.io import load_rated
from ratingrl.rl.train import train

from .test_rl_online import TINY

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
