"""Cost of ``GET /api/next`` as the project grows: N clips, M raters, one project.

For each N the script builds a fresh database directly through the store (N clips, M raters,
each rater with ``--history`` answers already given), then brings every rater to the state of a
busy project: each holds a clip (one open lease per rater, so with ``ratings_per_clip`` 1 the
first M clips by priority are taken). The timed loop then picks a random rater, answers their
clip through ``POST /api/ratings`` (not timed) and times ``GET /api/next`` through the app
(``fastapi.testclient.TestClient``: the whole request, routing and JSON included), which each
time picks a new clip, records its lease, and counts the rater's progress. Half of the timed
requests are followed by a second, timed ``GET /api/next`` (a reload: the same clip).

    .venv/bin/python benchmarks/bench_app_queue.py --clips 1000,20000,100000 --raters 1000

prints one JSON line per N (median, p90, p99, max in ms) and, with ``--out``, writes them all.
``--db sqlite`` (default) uses a file in a temporary folder; ``--db URL`` a PostgreSQL server
(``postgresql+psycopg://...``): a database named ``ratingrl_bench_queue`` is created and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.app.server import create_app

OPERATOR = "bench-operator-token"
BATCH = 5000  # clips per add_segments call while building


def build(db_url: str, clips: int, raters: int, history: int, per_clip: int) -> dict[str, str]:
    """The project: ``clips`` clips (random priorities), ``raters`` raters, their history."""
    spec = DemoSpec()
    rng = np.random.default_rng(0)
    with open_database(db_url) as database:
        with database.unit() as session:
            config = store.ProjectConfig(
                "bench", spec.env_id, spec.scale, clip_length=4, ratings_per_clip=per_clip,
                repeat_every=10,
            )  # fmt: skip
            project = store.create_project(session, config)
            tokens = {f"r{i}": store.add_rater(session, project, f"r{i}") for i in range(raters)}
        segments = synthetic_segments(BATCH, 4, 2, 1, seed=0)
        for start in range(0, clips, BATCH):
            n = min(BATCH, clips - start)
            with database.unit() as session:
                project = store.get_project(session, "bench")
                part = segments if n == BATCH else segments.subset(np.arange(n))
                store.add_segments(session, project, part, priority=rng.uniform(0, 1, n))
        for _ in range(history):
            with database.unit() as session:
                for token in tokens.values():
                    rater = store.rater_for_token(session, token)
                    item = store.next_item(session, rater)
                    if item is not None:
                        store.submit(session, rater, item.public_id, int(rng.integers(4)))
    return tokens


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2)


def measure(db_url: str, clip_dir: Path, tokens: dict[str, str], requests: int) -> dict:
    """Time ``requests`` GET /api/next that pick a new clip (plus reloads), as described above."""
    rng = np.random.default_rng(1)
    names = list(tokens)
    headers = {n: {"Authorization": f"Bearer {tokens[n]}"} for n in names}
    current: dict[str, str | None] = {}
    fresh, reload = [], []
    with TestClient(create_app(db_url, clip_dir, OPERATOR)) as client:
        for name in names:  # every rater holds a clip: M open leases
            current[name] = client.get("/api/next", headers=headers[name]).json()["clip_id"]
        for i in range(requests):
            name = names[int(rng.integers(len(names)))]
            if current[name] is not None:
                answer = {"clip_id": current[name], "rating": int(rng.integers(4))}
                response = client.post("/api/ratings", json=answer, headers=headers[name])
                assert response.status_code in (200, 201), response.text
            t0 = time.perf_counter()
            body = client.get("/api/next", headers=headers[name]).json()
            fresh.append(time.perf_counter() - t0)
            current[name] = body["clip_id"]
            if i % 2:
                t0 = time.perf_counter()
                again = client.get("/api/next", headers=headers[name]).json()
                reload.append(time.perf_counter() - t0)
                assert again["clip_id"] == body["clip_id"]
    both = fresh + reload
    return {
        "requests": len(both),
        "median_ms": _ms(both, 50),
        "p90_ms": _ms(both, 90),
        "p99_ms": _ms(both, 99),
        "max_ms": _ms(both, 100),
        "new_clip_median_ms": _ms(fresh, 50),
        "new_clip_p99_ms": _ms(fresh, 99),
        "reload_median_ms": _ms(reload, 50),
    }


def _pg_database(admin_url: str, name: str, create: bool) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def run(clips: int, args: argparse.Namespace, folder: Path) -> dict:
    if args.db == "sqlite":
        db_url = f"sqlite:///{folder / f'queue-{clips}.db'}"
    else:
        db_url = _pg_database(args.db, "ratingrl_bench_queue", create=True)
    try:
        t0 = time.perf_counter()
        tokens = build(db_url, clips, args.raters, args.history, args.per_clip)
        built = time.perf_counter() - t0
        result = measure(db_url, folder / "clips", tokens, args.requests)
    finally:
        if args.db != "sqlite":
            _pg_database(args.db, "ratingrl_bench_queue", create=False)
    return {
        "clips": clips,
        "raters": args.raters,
        "history": args.history,
        "ratings_per_clip": args.per_clip,
        "backend": "sqlite" if args.db == "sqlite" else "postgresql",
        **result,
        "build_s": round(built, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="1000,20000,100000", help="comma-separated N")
    parser.add_argument("--raters", type=int, default=1000)
    parser.add_argument("--history", type=int, default=3, help="answers per rater beforehand")
    parser.add_argument("--per-clip", type=int, default=1, help="the project's ratings_per_clip")
    parser.add_argument("--requests", type=int, default=1000, help="timed new-clip requests per N")
    parser.add_argument("--db", default="sqlite", help="'sqlite' or a PostgreSQL admin URL")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        for clips in (int(c) for c in args.clips.split(",")):
            results.append(run(clips, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    if args.out is not None:
        machine = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
        machine["os"] = platform.platform()
        report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "results": results}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
