"""The rating app end to end, in one process: a project, a rater, ratings, training data.

What an operator does with the CLI (``ratingrl app create-project / add-segments / add-rater``,
``ratingrl serve``, ``ratingrl app export``), done through the library so it runs anywhere:
segments are queued through :class:`AppRatingSource` (as an online training loop would), a
"rater" answers through the JSON API, and the source collects those ratings as RatedSegments.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.server import create_app
from ratingrl.app.source import AppRatingSource


def main(n_segments: int = 6, workdir: str | None = None) -> np.ndarray:
    folder = Path(workdir or tempfile.mkdtemp(prefix="ratingrl-app-"))
    db = f"sqlite:///{folder / 'ratings.db'}"
    tokens = seed_demo(db, DemoSpec(n_segments=0, raters=("alice",)))
    source = AppRatingSource(db)  # what the online loop would hold
    segments = synthetic_segments(n_segments, 10, 4, 2, seed=3)
    source.request(segments)

    with TestClient(create_app(db, folder / "clips", "operator-token")) as client:
        headers = {"Authorization": f"Bearer {tokens['alice']}"}
        while (clip := client.get("/api/next", headers=headers).json())["clip_id"]:
            video = client.get(clip["video_url"])  # the MP4 the page would play
            assert video.status_code == 200
            value = 2  # a stand-in for a person: every clip "good" (a rater presses 1..4)
            client.post("/api/ratings", json={"clip_id": clip["clip_id"], "rating": value},
                        headers=headers)  # fmt: skip
    rated = source.collect(timeout=1.0)
    source.close()
    assert rated is not None
    print(f"collected {len(rated)} ratings on scale {rated.scale.names}: {rated.ratings}")
    return rated.ratings


if __name__ == "__main__":
    main()
