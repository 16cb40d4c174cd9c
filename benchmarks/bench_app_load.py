"""Load test of the rating app: ``ratingrl serve`` on 127.0.0.1 and simulated raters.

Phases (``--phases``, each bounded by a rating count per rater and a wall-clock limit):

* ``flood``: two real raters rate and a prober asks ``/healthz`` every 50 ms while bursts of
  ``--flood`` simultaneous bad-token requests (new connections, GET /api/next and POST
  /api/ratings) arrive for ``--flood-seconds``; then SIGTERM during a burst. Reports the
  slowest ``/healthz`` and rater request (must stay under 5 s), what the flood was answered
  (401, or 503 when shed) and how long the server took to exit (must be under 10 s).
* ``steady``: ``--raters`` raters loop GET /api/next -> POST /api/ratings; ratings/s, p50/p99
  of each request, and ratings lost (acknowledged 201/200 but not stored with that value).
* ``crash``: the same, with SIGKILL of the server (every worker) after ``--kill-after`` s and
  a restart; raters retry the same answer (a retried POST of a committed rating is a 200).
* ``capacity``: ``--capacity-raters`` raters for ``--time-limit`` s: ratings/s, 0 lost.

``--db sqlite`` (default: a new file per phase) or a PostgreSQL server URL (a new database per
phase, dropped after), with ``--workers`` server processes (PostgreSQL only).

    .venv/bin/python benchmarks/bench_app_load.py --phases steady,crash --raters 32
    .venv/bin/python benchmarks/bench_app_load.py --phases capacity --capacity-raters 256
    scripts/with_postgres.sh sh -c '.venv/bin/python benchmarks/bench_app_load.py \\
        --phases capacity --db "$RATINGRL_TEST_POSTGRES" --workers 2'

Why not Locust: the figures need what a Locust file would have to add by hand around it --
each acknowledged rating compared with the database afterwards, the server killed and
restarted mid-run, a burst of hundreds of simultaneous new connections beside timed probes,
SIGTERM timed -- and on a 2-core machine the load generator's CPU is taken from the server
being measured. Client CPU per request, 32 users against a trivial async endpoint on this box
(locust 2.47 headless): Locust's HttpUser 722 us, its FastHttpUser 169 us, httpx in threads
(this script's earlier client) 549 us, this script's asyncio client 52 us -- at the 1,000
requests/s that 500 ratings/s take, 5% of a core instead of 17-72%. The script does what
Locust's headless mode does for us (a fixed number of simulated users, bounded in count and
time, loopback only, per-request p50/p99 and failure counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from loadkit import OPERATOR, Conn, Database, HttpError, Server, free_port  # noqa: E402

from ratingrl.app.demo import DemoSpec, seed_demo  # noqa: E402

SLOW_S = 5.0  # a real request slower than this fails the flood phase


@dataclass
class Tally:
    """What the simulated raters of one phase saw (one event loop: no locks needed)."""

    acked: dict[str, int] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    shed: int = 0
    broken: int = 0
    statuses: Counter = field(default_factory=Counter)

    def slowest_ms(self) -> float:
        return max(self.post_ms + self.next_ms, default=0.0)


async def _call(conn: Conn, method: str, path: str, body, times: list[float], tally: Tally):  # type: ignore[no-untyped-def]
    """``(status, payload)``, or None after a broken connection or a 503 (slept before retry)."""
    started = time.perf_counter()
    try:
        status, payload = await conn.request(method, path, body)
    except HttpError:
        tally.broken += 1
        await asyncio.sleep(0.1)
        return None
    times.append((time.perf_counter() - started) * 1000)
    if status == 503:
        tally.shed += 1
        await asyncio.sleep(0.2)
        return None
    return status, payload


async def _rater(port: int, token: str, per_rater: int, deadline: float, tally: Tally) -> None:
    rng = random.Random(token)
    conn = Conn(port, token)
    done = 0
    while done < per_rater and time.monotonic() < deadline:
        got = await _call(conn, "GET", "/api/next", None, tally.next_ms, tally)
        if got is None or got[0] != 200:
            if got is not None:
                tally.statuses[f"next {got[0]}"] += 1
                await asyncio.sleep(0.1)
            continue
        data = json.loads(got[1])
        if data["clip_id"] is None:
            break
        body = {"clip_id": data["clip_id"], "rating": rng.randrange(data["scale"]["n"])}
        while time.monotonic() < deadline:  # the same answer until it is acknowledged
            got = await _call(conn, "POST", "/api/ratings", body, tally.post_ms, tally)
            if got is None:
                continue
            if got[0] in (200, 201):
                tally.acked[body["clip_id"]] = body["rating"]
                done += 1
            else:
                tally.statuses[f"post {got[0]}"] += 1
            break
    conn.close()


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


@dataclass
class Result:
    phase: str
    db: str
    workers: int
    raters: int
    acknowledged: int
    seconds: float
    ratings_per_s: float
    post_p50_ms: float
    post_p99_ms: float
    next_p50_ms: float
    next_p99_ms: float
    lost: int
    shed_503: int
    broken: int
    sigterm_exit_s: float | None
    notes: list[str] = field(default_factory=list)


def _seed(db: Database, raters: int, clips: int) -> dict[str, str]:
    names = tuple(f"rater{i:03d}" for i in range(raters))
    return seed_demo(db.url, DemoSpec(n_segments=clips, raters=names, references=False))


async def _drive_raters(server: Server, tokens: dict, args, per_rater: int, kill_after):  # type: ignore[no-untyped-def]
    tally = Tally()
    deadline = time.monotonic() + args.time_limit
    tasks = [
        asyncio.create_task(_rater(server.port, t, per_rater, deadline, tally))
        for t in tokens.values()
    ]
    notes = []
    if kill_after is not None:
        await asyncio.sleep(kill_after)
        before = len(tally.acked)
        await asyncio.to_thread(server.kill)
        notes.append(f"SIGKILL after {kill_after:.1f} s with {before} ratings acknowledged")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        notes.append("restarted")
    await asyncio.gather(*tasks)
    return tally, notes


def run_raters(phase: str, args, workdir: Path, raters: int, kill_after) -> Result:  # type: ignore[no-untyped-def]
    """The steady, crash and capacity phases: raters until done or out of time."""
    per_rater = args.per_rater
    db = Database.new(args.db, workdir, phase)
    try:
        tokens = _seed(db, raters, raters * per_rater + 10)
        server = Server(db.url, workdir / "clips", free_port(), args.workers, args.serve_args)
        server.start()
        started = time.monotonic()
        tally, notes = asyncio.run(_drive_raters(server, tokens, args, per_rater, kill_after))
        seconds = time.monotonic() - started
        exit_s = server.terminate()
        stored = db.stored_ratings()
    finally:
        db.drop()
    lost = sum(1 for clip, value in tally.acked.items() if stored.get(clip) != value)
    notes += [f"{n}x {s}" for s, n in tally.statuses.items()]
    return Result(
        phase, args.db.split(":")[0], args.workers, raters, len(tally.acked), round(seconds, 2),
        round(len(tally.acked) / seconds, 1), _pct(tally.post_ms, 50), _pct(tally.post_ms, 99),
        _pct(tally.next_ms, 50), _pct(tally.next_ms, 99), lost, tally.shed, tally.broken,
        None if exit_s is None else round(exit_s, 2), notes,
    )  # fmt: skip


async def _bad_request(port: int, i: int) -> tuple[str, float]:
    conn = Conn(port, f"not-a-token-{i}", timeout=30)
    started = time.perf_counter()
    try:
        if i % 2:
            status, _ = await conn.request("GET", "/api/next")
        else:
            body = {"clip_id": "0" * 32, "rating": 1}
            status, _ = await conn.request("POST", "/api/ratings", body)
        outcome = str(status)
    except HttpError:
        outcome = "broken"
    conn.close()
    return outcome, time.perf_counter() - started


async def _probe(port: int, stop: asyncio.Event, times: list[float], tally: Tally) -> None:
    conn = Conn(port, timeout=30)
    while not stop.is_set():
        got = await _call(conn, "GET", "/healthz", None, times, tally)
        if got is not None and got[0] != 200:
            tally.statuses[f"healthz {got[0]}"] += 1
        await asyncio.sleep(0.05)
    conn.close()


async def _burst(port: int, n: int, outcomes: Counter) -> float:
    """``n`` bad-token requests at once, each on a new connection; the slowest one's seconds."""
    slowest = 0.0
    for outcome, seconds in await asyncio.gather(*(_bad_request(port, i) for i in range(n))):
        outcomes[outcome] += 1
        slowest = max(slowest, seconds)
    return slowest


async def _drive_flood(server: Server, tokens: dict, args) -> tuple:  # type: ignore[no-untyped-def]
    """Bursts while the raters rate and the probe probes; then a last burst and SIGTERM."""
    tally, probe_tally, health_ms = Tally(), Tally(), []
    stop = asyncio.Event()
    flood_end = time.monotonic() + 0.5 + args.flood_seconds
    raters = [
        asyncio.create_task(_rater(server.port, t, 10**6, flood_end, tally))
        for t in tokens.values()
    ]
    probe = asyncio.create_task(_probe(server.port, stop, health_ms, probe_tally))
    await asyncio.sleep(0.5)
    outcomes: Counter = Counter()
    slowest, bursts = 0.0, 0
    while time.monotonic() < flood_end:
        slowest = max(slowest, await _burst(server.port, args.flood, outcomes))
        bursts += 1
        await asyncio.sleep(0.2)
    await asyncio.gather(*raters)
    last = asyncio.create_task(_burst(server.port, args.flood, outcomes))
    await asyncio.sleep(0.05)  # SIGTERM while the last burst is in flight
    stop.set()
    exit_s = await asyncio.to_thread(server.terminate, 30.0)
    slowest = max(slowest, await last)
    await probe
    return tally, probe_tally, health_ms, outcomes, slowest, bursts + 1, exit_s


def run_flood(args, workdir: Path) -> Result:  # type: ignore[no-untyped-def]
    """Bursts of bad-token requests beside two real raters and a health probe, then SIGTERM."""
    db = Database.new(args.db, workdir, "flood")
    try:
        tokens = _seed(db, 2, 3_000)
        server = Server(db.url, workdir / "clips", free_port(), args.workers, args.serve_args)
        server.start()
        started = time.monotonic()
        got = asyncio.run(_drive_flood(server, tokens, args))
        tally, probe_tally, health_ms, outcomes, slowest_bad, bursts, exit_s = got
        seconds = time.monotonic() - started
        stored = db.stored_ratings()
    finally:
        db.drop()
    lost = sum(1 for clip, value in tally.acked.items() if stored.get(clip) != value)
    notes = [
        f"{bursts} bursts of {args.flood} bad-token requests: "
        + ", ".join(f"{n}x {k}" for k, n in sorted(outcomes.items())),
        f"slowest /healthz {max(health_ms, default=0):.0f} ms ({len(health_ms)} probes)",
        f"slowest rater request {tally.slowest_ms():.0f} ms",
        f"slowest bad-token request {slowest_bad * 1000:.0f} ms",
    ]
    if max(health_ms, default=0) > SLOW_S * 1000 or tally.slowest_ms() > SLOW_S * 1000:
        notes.append(f"FAIL: a real request took over {SLOW_S:.0f} s")
    return Result(
        "flood", args.db.split(":")[0], args.workers, 2, len(tally.acked), round(seconds, 2),
        round(len(tally.acked) / seconds, 1), _pct(tally.post_ms, 50), _pct(tally.post_ms, 99),
        _pct(tally.next_ms, 50), _pct(tally.next_ms, 99), lost, tally.shed + probe_tally.shed,
        tally.broken + probe_tally.broken, None if exit_s is None else round(exit_s, 2), notes,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="flood,steady,crash,capacity")
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL server URL")
    parser.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    parser.add_argument("--raters", type=int, default=32, help="raters of steady and crash")
    parser.add_argument("--capacity-raters", type=int, default=256)
    parser.add_argument("--per-rater", type=int, default=40, help="ratings per rater (bound)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase (bound)")
    parser.add_argument("--kill-after", type=float, default=3.0, help="SIGKILL after (crash phase)")
    parser.add_argument("--flood", type=int, default=400, help="bad-token requests per burst")
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    parser.add_argument(
        "--serve-option", dest="serve_args", action="append", default=[],
        help="passed to ratingrl serve, e.g. --serve-option=--group-commit=1",
    )
    args = parser.parse_args(argv)
    phases = args.phases.split(",")
    assert OPERATOR  # the servers get it from the environment (loadkit.Server)
    results = []
    with tempfile.TemporaryDirectory(prefix="ratingrl-load-") as tmp:
        for phase in phases:
            if phase == "flood":
                results.append(run_flood(args, Path(tmp)))
            elif phase in ("steady", "crash", "capacity"):
                raters = args.capacity_raters if phase == "capacity" else args.raters
                kill = args.kill_after if phase == "crash" else None
                results.append(run_raters(phase, args, Path(tmp), raters, kill))
            else:
                parser.error(f"unknown phase {phase!r} (flood, steady, crash, capacity)")
    _print(results)
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if any(r.lost for r in results):
        raise SystemExit("acknowledged ratings were lost")
    return results


def _print(results: list[Result]) -> None:
    print(
        "| phase | db | workers | raters | acked | s | ratings/s | POST p50/p99 ms "
        "| GET next p50/p99 ms | lost | 503 | broken | SIGTERM exit s | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.phase} | {r.db} | {r.workers} | {r.raters} | {r.acknowledged} | {r.seconds} "
            f"| {r.ratings_per_s} | {r.post_p50_ms} / {r.post_p99_ms} "
            f"| {r.next_p50_ms} / {r.next_p99_ms} | {r.lost} | {r.shed_503} | {r.broken} "
            f"| {r.sigterm_exit_s} | {'; '.join(r.notes)} |"
        )


if __name__ == "__main__":
    main()
