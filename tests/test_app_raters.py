"""Rater management: list raters with what they did, revoke a token, give a new one; and the
operator's token, which ``ratingrl serve`` takes from a file or the environment, never argv.

A leaked token must stop working at once (401 on the next request, the server keeps running),
while the ratings given with it stay; a rotated token replaces the old one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ratingrl.app import store
from ratingrl.app.demo import DemoSpec, seed_demo, synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.app.server import create_app
from ratingrl.cli import app as ratingrl_cli
from ratingrl.cli.app import app_cli

OPERATOR = "operator-secret-token"


@pytest.fixture
def app(tmp_path, db_url):
    """A client of a served demo project (alice and bob), its tokens and database URL."""
    tokens = seed_demo(db_url, DemoSpec(n_segments=6, references=False))
    with TestClient(create_app(db_url, tmp_path / "clips", OPERATOR)) as client:
        yield client, tokens, db_url


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _answer(client, token: str, **answer):  # type: ignore[no-untyped-def]
    """Answer the clip the rater is shown (the refusal of ``GET /api/next`` if it is refused)."""
    shown = client.get("/api/next", headers=_auth(token))
    if shown.status_code != 200:
        return shown
    clip = shown.json()["clip_id"]
    return client.post("/api/ratings", json={"clip_id": clip, **answer}, headers=_auth(token))


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app_cli, list(args))


def _table(output: str) -> dict[str, list[str]]:
    """``ratingrl app raters``' rows by name: [active, ratings, pairs, skips, last active]."""
    lines = output.strip().splitlines()
    assert lines[0].split()[:5] == ["name", "active", "ratings", "pairs", "skips"]
    rows = {}
    for line in lines[1:]:
        name, active, ratings, pairs, skips, *last = line.split()
        rows[name] = [active, ratings, pairs, skips, " ".join(last)]
    return rows


def test_a_revoked_token_is_refused_at_once_and_its_ratings_stay(app):
    client, tokens, db = app
    alice, bob = tokens["alice"], tokens["bob"]
    assert _answer(client, alice, rating=2).status_code == 201
    shown = client.get("/api/next", headers=_auth(alice)).json()["clip_id"]  # an open clip
    revoked = _cli("revoke", "alice", "--db", db)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked 'alice'" in revoked.output
    # the running server refuses the token on every request, reads and writes alike
    assert client.get("/api/next", headers=_auth(alice)).status_code == 401
    answer = {"clip_id": shown, "rating": 1}
    assert client.post("/api/ratings", json=answer, headers=_auth(alice)).status_code == 401
    assert client.post("/api/undo", headers=_auth(alice)).status_code == 401
    assert _answer(client, bob, rating=3).status_code == 201  # other raters are unaffected
    stats = client.get("/api/operator/stats", headers=_auth(OPERATOR)).json()["projects"][0]
    assert {r["name"]: r["rated"] for r in stats["raters"]} == {"alice": 1, "bob": 1}
    listed = _table(_cli("raters", "--db", db).output)
    assert listed["alice"][:2] == ["no", "1"] and listed["bob"][:2] == ["yes", "1"]
    unknown = _cli("revoke", "carol", "--db", db)
    assert unknown.exit_code == 2 and "no rater named 'carol'" in unknown.output


def test_a_rotated_token_replaces_the_old_one(app):
    client, tokens, db = app
    old = tokens["bob"]
    assert _answer(client, old, rating=1).status_code == 201
    rotated = _cli("rotate-token", "bob", "--db", db)
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip().splitlines()[0]
    assert new != old and f"#token={new}" in rotated.stderr
    assert client.get("/api/next", headers=_auth(old)).status_code == 401
    assert _answer(client, old, rating=1).status_code == 401
    following = client.get("/api/next", headers=_auth(new))
    assert following.status_code == 200
    assert following.json()["progress"]["rated"] == 1  # the same rater, their history kept
    assert _answer(client, new, rating=0).status_code == 201
    # revoked, then rotated: active again, with a token only they hold
    assert _cli("revoke", "bob", "--db", db).exit_code == 0
    assert client.get("/api/next", headers=_auth(new)).status_code == 401
    newest = _cli("rotate-token", "bob", "--db", db).stdout.strip().splitlines()[0]
    assert client.get("/api/next", headers=_auth(newest)).status_code == 200
    assert client.get("/api/next", headers=_auth(new)).status_code == 401
    assert _table(_cli("raters", "--db", db).output)["bob"][:2] == ["yes", "2"]


def test_the_rater_list_counts_what_each_rater_did(app):
    client, tokens, db = app
    alice = tokens["alice"]
    started = time.time()
    for answer in ({"rating": 3}, {"rating": 0}, {"skip": True}, {"rating": 1}):
        assert _answer(client, alice, **answer).status_code == 201
    assert client.post("/api/undo", headers=_auth(alice)).json()["undone"]  # withdraws the 1
    with open_database(db) as database, database.unit() as session:  # two comparisons
        project = store.get_project(session)
        store.set_asks(session, project, "both")
        segments = synthetic_segments(4, 10, 4, 2, seed=9)
        store.add_pairs(session, project, segments.subset([0, 1]), segments.subset([2, 3]))
        rater = store.rater_for_token(session, alice)
        for answer in ({"choice": "left"}, {"choice": None, "skip": True}):
            store.answer_pair(session, rater, store.next_pair(session, rater).public_id, **answer)
    with open_database(db) as database, database.unit() as session:
        summaries = {s.name: s for s in store.rater_summaries(session, store.get_project(session))}
    a, b = summaries["alice"], summaries["bob"]
    assert (a.active, a.ratings, a.pairs, a.skips) == (True, 2, 1, 2)
    assert started - 1 <= a.last_active <= time.time() + 1
    assert (b.active, b.ratings, b.pairs, b.skips, b.last_active) == (True, 0, 0, 0, None)
    listed = _cli("raters", "--db", db)
    assert listed.exit_code == 0, listed.output
    rows = _table(listed.output)
    assert rows["alice"][:4] == ["yes", "2", "1", "2"]
    assert rows["alice"][4] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.last_active))
    assert rows["bob"] == ["yes", "0", "0", "0", "-"]
    assert list(rows) == ["alice", "bob"]  # in the order they were added


# -- the operator token ------------------------------------------------------------------------
def _serve(tmp_path: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``ratingrl serve`` on a free loopback port, answering /healthz; ``.port`` is set."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ratingrl = shutil.which("ratingrl", path=str(Path(sys.executable).parent)) or "ratingrl"
    command = [ratingrl, "serve", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--port", str(port)]
    command += ["--clip-dir", str(tmp_path / "clips"), *args]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    server.port = port  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"ratingrl serve did not start: {server.communicate()[1]}")


def _command_lines(pid: int) -> list[str]:
    """The command lines of ``pid`` and its descendants, as ``ps`` shows them to anyone."""
    children = {pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in children:  # fields[1] is the parent's pid
            children.add(int(stat.parent.name))
    lines = []
    for child in children:
        try:
            lines.append((Path("/proc") / str(child) / "cmdline").read_bytes().decode())
        except OSError:
            continue
    return lines


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_operator_token_comes_from_a_file_or_the_environment_never_argv(tmp_path):
    token = f"op-{secrets.token_hex(16)}"
    env = {k: v for k, v in os.environ.items() if k != "RATINGRL_OPERATOR_TOKEN"}
    file = tmp_path / "operator-token"
    file.write_text(token + "\n")
    file.chmod(0o600)
    for args, environ in (
        (["--operator-token-file", str(file)], env),
        ([], {**env, "RATINGRL_OPERATOR_TOKEN": token}),
    ):
        server = _serve(tmp_path, args, environ)
        try:
            stats = f"http://127.0.0.1:{server.port}/api/operator/stats"
            assert httpx.get(stats, headers=_auth(token)).status_code == 200
            assert httpx.get(stats, headers=_auth(token[:-1] + "x")).status_code == 401
            lines = _command_lines(server.pid)
            assert lines and any("serve" in line for line in lines)
            assert not any(token in line for line in lines)
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            assert token not in ps
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=30)
        assert token not in stderr  # a given token is not echoed either


def test_a_token_on_the_command_line_or_a_bad_token_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("RATINGRL_OPERATOR_TOKEN", raising=False)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    argv = runner.invoke(ratingrl_cli, ["serve", "--db", db, "--operator-token", "secret-12345"])
    assert argv.exit_code == 2 and "--operator-token-file" in argv.output
    missing = runner.invoke(ratingrl_cli, ["serve", "--db", db, "--operator-token-file", "nope"])
    assert missing.exit_code == 2 and "cannot read it" in missing.output
    short = tmp_path / "short"
    short.write_text("abc\n")
    refused = runner.invoke(
        ratingrl_cli, ["serve", "--db", db, "--operator-token-file", str(short)]
    )
    assert refused.exit_code == 2 and "at least 8 characters" in refused.output
    monkeypatch.setenv("RATINGRL_OPERATOR_TOKEN", "abc")
    from_env = runner.invoke(ratingrl_cli, ["serve", "--db", db])
    assert from_env.exit_code == 2 and "RATINGRL_OPERATOR_TOKEN" in from_env.output
    assert not (tmp_path / "r.db").exists()  # refused before the database was touched
