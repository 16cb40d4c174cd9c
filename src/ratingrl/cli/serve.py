"""``ratingrl serve``: the rating page and JSON API for people.

    ratingrl serve --db sqlite:///ratings.db      # 127.0.0.1:8000 unless --host is given
    ratingrl serve --db postgresql+psycopg://... --workers 2

The operator page's token comes from ``--operator-token-file PATH`` or
``$RATINGRL_OPERATOR_TOKEN`` (else a new one is printed), never from the command line, where
``ps`` shows it to every user of the machine.

SQLite is served by one process (one writer at a time; the server queues writes on one
thread); PostgreSQL by ``--workers`` processes. Each worker builds the app with
:func:`ratingrl.app.server.app_from_environment` from variables this command sets, so the
operator token is never on a command line. SIGTERM (or Ctrl-C) lets requests in flight finish
for up to ``--shutdown-timeout`` seconds, then the server exits.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ratingrl.cli.app import DEFAULT_DB, DbOpt
from ratingrl.cli.common import fail

__all__ = ["serve_command", "OPERATOR_TOKEN_ENV"]

OPERATOR_TOKEN_ENV = "RATINGRL_OPERATOR_TOKEN"


def _token_from_file(path: Path) -> str:
    """The operator token in ``path`` (surrounding whitespace and the final newline dropped)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as err:
        raise fail(f"--operator-token-file {str(path)!r}: cannot read it ({err})") from None
    if len(token) < 8 or any(c.isspace() for c in token):
        raise fail(
            f"--operator-token-file {str(path)!r} must hold one token of at least 8 characters "
            "without spaces"
        )
    if mode & 0o077:
        typer.echo(f"warning: {path} is readable by other users (chmod 600 {path})", err=True)
    return token


def _operator_token(path: Path | None, on_command_line: str | None) -> str | None:
    """The operator token from the file, else the environment; None: make a new one."""
    if on_command_line is not None:
        raise fail(
            "--operator-token would show the token to every user of the machine (ps): put it in "
            f"a file (--operator-token-file PATH) or in ${OPERATOR_TOKEN_ENV}"
        )
    if path is not None:
        return _token_from_file(path)
    token = os.environ.get(OPERATOR_TOKEN_ENV, "").strip()
    if token and len(token) < 8:
        raise fail(f"${OPERATOR_TOKEN_ENV} must be at least 8 characters, got {len(token)}")
    return token or None


def _check_limits(
    db: str, workers: int, max_waiting: int, group_commit: int, shutdown: float, max_wait: float
) -> None:
    """Refuse impossible settings before anything is opened, naming the option."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(db).get_backend_name()
    except ArgumentError:
        raise fail(f"--db {db!r} is not a database URL (e.g. sqlite:///ratings.db)") from None
    if min(workers, max_waiting, group_commit) < 1 or shutdown < 0 or max_wait <= 0:
        raise fail(
            "--workers, --max-waiting and --group-commit must be >= 1, --shutdown-timeout >= 0 "
            f"and --max-wait > 0, got {workers}, {max_waiting}, {group_commit}, {shutdown}, "
            f"{max_wait}"
        )
    if workers > 1 and backend == "sqlite":
        raise fail(
            f"--workers {workers} needs PostgreSQL: SQLite takes one writer at a time, so it is "
            "served by one process (drop --workers, or use a postgresql+psycopg:// --db)"
        )


def serve_command(
    db: DbOpt = DEFAULT_DB,
    clip_dir: Annotated[Path, typer.Option(help="folder of the clip cache")] = Path("clips"),
    host: Annotated[
        str, typer.Option(help="interface to listen on (another host only when asked)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    operator_token_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding the operator page's token (default: $RATINGRL_OPERATOR_TOKEN, "
            "else a new token is printed)"
        ),
    ] = None,
    operator_token: Annotated[
        str | None, typer.Option(hidden=True, help="refused: the command line is public")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="server processes (more than 1 needs PostgreSQL)")
    ] = 1,
    max_waiting: Annotated[
        int, typer.Option(help="requests a database pool holds before answering 503")
    ] = 512,
    shutdown_timeout: Annotated[
        float, typer.Option(help="seconds requests in flight get to finish on SIGTERM")
    ] = 5.0,
    group_commit: Annotated[
        int, typer.Option(help="SQLite: writes sharing one commit at most (1: one each)")
    ] = 64,
    max_wait: Annotated[
        float, typer.Option(help="seconds a request may wait for a database thread, then 503")
    ] = 2.0,
) -> None:
    """Serve the rating page and JSON API (bound to 127.0.0.1 unless --host says otherwise)."""
    import uvicorn

    from ratingrl.app.errors import AppError
    from ratingrl.app.schema import upgrade_database
    from ratingrl.app.server import SERVE_ENV

    _check_limits(db, workers, max_waiting, group_commit, shutdown_timeout, max_wait)
    given = _operator_token(operator_token_file, operator_token)  # before touching the database
    try:
        upgrade = upgrade_database(db)
    except AppError as err:
        raise fail(str(err)) from None
    if upgrade.message:
        typer.echo(upgrade.message, err=True)
    token = given or secrets.token_urlsafe(24)
    if given is None:
        typer.echo(f"operator page: http://{host}:{port}/operator#token={token}", err=True)
    os.environ.setdefault("MUJOCO_GL", "egl")
    # the worker processes (and the one process of --workers 1) read these: no secret in argv
    os.environ[SERVE_ENV["db"]] = db
    os.environ[SERVE_ENV["clip_dir"]] = str(clip_dir)
    os.environ[SERVE_ENV["operator_token"]] = token
    config = {"max_waiting": max_waiting, "group_commit": group_commit, "max_wait_s": max_wait}
    os.environ[SERVE_ENV["config"]] = json.dumps(config)
    uvicorn.run(
        "ratingrl.app.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_graceful_shutdown=shutdown_timeout,
    )
