"""Online training with people comparing pairs: the loop queues pairs on the app's comparison
page, a person answers them over the JSON API while the policy keeps training, and every answer
reaches the run's feedback dataset with the label of the side chosen (left clip first) -- as
the only feedback (``method="bt"``) and beside people's ratings (``preference_budget``)."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ratingrl.app import store
from ratingrl.app.db import PairItem, bytes_to_array
from ratingrl.app.demo import DemoSpec, seed_demo
from ratingrl.app.pair_source import AppPreferenceSource
from ratingrl.app.schema import open_database
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource
from ratingrl.feedback.io import load_preferences, load_rated
from ratingrl.rl.run import Run

CHOICES = {"left": 0.0, "right": 1.0, "equal": 0.5}


def _project(db: str, horizon: int, asks: str) -> dict[str, str]:
    spec = DemoSpec(
        env_id="Pendulum-v1", n_segments=0, clip_length=horizon, raters=("alice",),
        references=False,
    )  # fmt: skip
    tokens = seed_demo(db, spec)
    with open_database(db) as database, database.unit() as session:
        store.set_asks(session, store.get_project(session), asks)
    return tokens


def _person(client: TestClient, token: str, stop: threading.Event, log: dict) -> None:
    """Compares whatever pair the page shows (left, right, equally good in turn) and, when the
    project also asks for ratings, rates whatever clip comes (cycling through the scale)."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        while not stop.is_set():
            idle = True
            pair = client.get("/api/pairs/next", headers=headers).json().get("pair_id")
            if pair is not None:
                choice = list(CHOICES)[len(log["pairs"]) % 3]
                body = {"pair_id": pair, "choice": choice}
                if client.post("/api/pairs/answers", json=body, headers=headers).status_code == 201:
                    log["pairs"].append((pair, choice))
                idle = False
            if log["rates"]:
                clip = client.get("/api/next", headers=headers).json().get("clip_id")
                if clip is not None:
                    value = len(log["ratings"]) % 4
                    body = {"clip_id": clip, "rating": value}
                    if client.post("/api/ratings", json=body, headers=headers).status_code == 201:
                        log["ratings"].append(value)
                    idle = False
            if idle:
                stop.wait(0.05)
    except Exception as err:  # the test reports it: a thread's exception would vanish
        log["error"] = repr(err)


def _left_clips(db: str, pair_ids: list[str]) -> list[np.ndarray]:
    """The observations of the clip each pair showed on the left, as stored."""
    with open_database(db) as database, database.unit(write=False) as session:
        query = select(PairItem).where(PairItem.public_id.in_(pair_ids))
        items = {item.public_id: item for item in session.scalars(query)}
        return [bytes_to_array(store.pair_sides(session, items[p])[0].obs) for p in pair_ids]


def _train_with_person(db, tmp_path, tokens, config, **sources) -> tuple[dict, dict]:
    client = TestClient(create_app(db, tmp_path / "clips", "operator-token"))
    stop = threading.Event()
    log = {"pairs": [], "ratings": [], "rates": "source" in sources}
    person = threading.Thread(target=_person, args=(client, tokens["alice"], stop, log))
    person.start()
    try:
        run = Run.create(config, tmp_path / "run", progress=False, **sources)
        summary = run.learn()
    finally:
        stop.set()
        person.join(timeout=10)
        for source in sources.values():
            source.close()
    assert "error" not in log, log["error"]
    return summary, log


@pytest.mark.slow
def test_a_persons_pair_answers_reach_an_online_bt_run(tmp_path, tiny_config, db_url):
    tiny = replace(tiny_config, buffer_size=1000, checkpoint_every=300)
    tokens = _project(db_url, tiny.horizon, "pairs")
    config = replace(tiny, method="bt", total_steps=900, budget=20, per_round=10)
    summary, log = _train_with_person(
        db_url, tmp_path, tokens, config, source=AppPreferenceSource(db_url)
    )
    feedback = load_preferences(tmp_path / "run" / "feedback.parquet")
    assert 10 <= len(feedback) <= len(log["pairs"])
    answered = log["pairs"][: len(feedback)]  # one person: answers arrive in the order given
    assert feedback.labels.tolist() == [CHOICES[choice] for _pair, choice in answered]
    left = _left_clips(db_url, [pair for pair, _choice in answered])
    for i, obs in enumerate(left):  # the left clip is ``first``
        assert np.allclose(feedback.first.obs[i], obs)
    assert summary["labels_used"] == len(feedback)
    assert summary["env_steps"] >= 900


@pytest.mark.slow
def test_people_s_ratings_and_pairs_mix_in_one_run(tmp_path, tiny_config, db_url):
    tiny = replace(tiny_config, buffer_size=1000, checkpoint_every=300)
    tokens = _project(db_url, tiny.horizon, "both")
    config = replace(
        tiny, method="rbrl", total_steps=900, budget=20, per_round=10, preference_budget=10
    )
    summary, log = _train_with_person(
        db_url, tmp_path, tokens, config,
        source=AppRatingSource(db_url), pair_source=AppPreferenceSource(db_url),
    )  # fmt: skip
    ratings = load_rated(tmp_path / "run" / "feedback.parquet")
    pairs = load_preferences(tmp_path / "run" / "feedback_pairs.parquet")
    assert 10 <= len(ratings) <= len(log["ratings"])
    assert ratings.ratings.tolist() == log["ratings"][: len(ratings)]
    assert set(ratings.rater.tolist()) == {"alice"}
    assert 5 <= len(pairs) <= len(log["pairs"])
    answered = log["pairs"][: len(pairs)]
    assert pairs.labels.tolist() == [CHOICES[choice] for _pair, choice in answered]
    assert summary["labels_used"] == len(ratings) + len(pairs)
