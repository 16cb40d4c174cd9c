"""Load test of the rating app: a real uvicorn server on 127.0.0.1, 32 concurrent raters.

Two phases, each bounded by a rating count per rater and a wall-clock limit:

1. steady: every rater loops GET /api/next -> POST /api/ratings; we report ratings/s, p50/p99
   latency of the POST, and ratings lost (acknowledged with 201/200 but not in the database);
2. crash: the same, but the server is killed with SIGKILL mid-run and restarted; raters retry
   (a retried POST of a committed rating is answered 200 "duplicate"), and afterwards every
   acknowledged rating must be in the database with the acknowledged value.

    .venv/bin/python benchmarks/bench_app_load.py --raters 32 --per-rater 40 --time-limit 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from ratingrl.app.demo import DemoSpec, seed_demo

OPERATOR = "bench-operator-token"
LAUNCH = (
    "import sys, uvicorn; from ratingrl.app.server import create_app; "
    "uvicorn.run(create_app(sys.argv[1], sys.argv[2], sys.argv[3]), host='127.0.0.1', "
    "port=int(sys.argv[4]), log_level='warning')"
)


@dataclass
class PhaseResult:
    phase: str
    raters: int
    acknowledged: int
    seconds: float
    ratings_per_s: float
    p50_ms: float
    p99_ms: float
    lost: int
    wrong_value: int
    errors_retried: int
    notes: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -c LAUNCH`` in its own process group, so SIGKILL takes exactly that server."""

    def __init__(self, db_url: str, clip_dir: Path, port: int) -> None:
        self.args = [sys.executable, "-c", LAUNCH, db_url, str(clip_dir), OPERATOR, str(port)]
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(self.args, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _rater(
    url: str,
    token: str,
    per_rater: int,
    deadline: float,
    acked: dict[str, int],
    latencies: list[float],
    counters: dict[str, int],
    lock: threading.Lock,
) -> None:
    rng = np.random.default_rng(abs(hash(token)) % 2**32)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        done = 0
        while done < per_rater and time.monotonic() < deadline:
            try:
                nxt = client.get("/api/next")
                nxt.raise_for_status()
            except httpx.HTTPError:
                with lock:
                    counters["retried"] += 1
                time.sleep(0.1)
                continue
            clip = nxt.json()["clip_id"]
            if clip is None:
                return
            value = int(rng.integers(nxt.json()["scale"]["n"]))
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.post("/api/ratings", json={"clip_id": clip, "rating": value})
                except httpx.HTTPError:  # server gone: retry the same answer (idempotent)
                    with lock:
                        counters["retried"] += 1
                    time.sleep(0.1)
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code in (200, 201):
                    with lock:
                        acked[clip] = value
                        latencies.append(elapsed)
                    done += 1
                else:
                    with lock:
                        counters["rejected"] += 1
                break


def run_phase(
    phase: str,
    workdir: Path,
    raters: int,
    per_rater: int,
    time_limit: float,
    kill_after: float | None,
) -> PhaseResult:
    db_path = workdir / f"{phase}.db"
    db_url = f"sqlite:///{db_path}"
    names = tuple(f"rater{i:02d}" for i in range(raters))
    tokens = seed_demo(
        db_url,
        DemoSpec(n_segments=raters * per_rater + 10, raters=names, references=False),
    )
    server = Server(db_url, workdir / "clips", _free_port())
    server.start()
    acked: dict[str, int] = {}
    latencies: list[float] = []
    counters = {"retried": 0, "rejected": 0}
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + time_limit
    threads = [
        threading.Thread(
            target=_rater,
            args=(server.url, tokens[n], per_rater, deadline, acked, latencies, counters, lock),
        )
        for n in names
    ]
    for t in threads:
        t.start()
    notes = []
    if kill_after is not None:
        time.sleep(kill_after)
        with lock:
            before = len(acked)
        server.kill()
        notes.append(f"SIGKILL after {kill_after:.1f} s with {before} ratings acknowledged")
        time.sleep(1.0)
        server.start()
        notes.append("restarted")
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    server.stop()
    with sqlite3.connect(db_path) as conn:
        stored = dict(
            conn.execute(
                "SELECT q.public_id, r.value FROM ratings r JOIN queue_items q ON q.id = r.item_id "
                "WHERE r.status = 'rated'"
            ).fetchall()
        )
    lost = sum(1 for clip in acked if clip not in stored)
    wrong = sum(1 for clip, v in acked.items() if clip in stored and stored[clip] != v)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return PhaseResult(
        phase=phase,
        raters=raters,
        acknowledged=len(acked),
        seconds=round(seconds, 2),
        ratings_per_s=round(len(acked) / seconds, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 1),
        p99_ms=round(float(np.percentile(lat, 99)), 1),
        lost=lost,
        wrong_value=wrong,
        errors_retried=counters["retried"],
        notes=notes + ([f"{counters['rejected']} rejected"] if counters["rejected"] else []),
    )


def main(argv: list[str] | None = None) -> list[PhaseResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=32)
    parser.add_argument("--per-rater", type=int, default=40, help="ratings per rater (bound)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase (bound)")
    parser.add_argument("--kill-after", type=float, default=3.0, help="SIGKILL after (crash phase)")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ratingrl-load-") as tmp:
        results = [
            run_phase("steady", Path(tmp), args.raters, args.per_rater, args.time_limit, None),
            run_phase(
                "crash", Path(tmp), args.raters, args.per_rater, args.time_limit, args.kill_after
            ),
        ]
    print("| phase | raters | ratings acked | s | ratings/s | p50 ms | p99 ms | lost | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.phase} | {r.raters} | {r.acknowledged} | {r.seconds} | {r.ratings_per_s} | "
            f"{r.p50_ms} | {r.p99_ms} | {r.lost + r.wrong_value} | {'; '.join(r.notes)} |"
        )
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if any(r.lost or r.wrong_value for r in results):
        raise SystemExit("acknowledged ratings were lost")
    return results


if __name__ == "__main__":
    main()
