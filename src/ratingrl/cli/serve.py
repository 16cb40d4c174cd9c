"""``ratingrl serve``: the rating page and JSON API for people.

    ratingrl serve --db sqlite:///ratings.db      # 127.0.0.1:8000 unless --host is given
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ratingrl.cli.app import DEFAULT_DB, DbOpt
from ratingrl.cli.common import fail

__all__ = ["serve_command"]


def serve_command(
    db: DbOpt = DEFAULT_DB,
    clip_dir: Annotated[Path, typer.Option(help="folder of the clip cache")] = Path("clips"),
    host: Annotated[
        str, typer.Option(help="interface to listen on (another host only when asked)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    operator_token: Annotated[
        str | None,
        typer.Option(
            help="token of the operator page (default: $RATINGRL_OPERATOR_TOKEN or a new one)",
            envvar="RATINGRL_OPERATOR_TOKEN",
        ),
    ] = None,
) -> None:
    """Serve the rating page and JSON API (bound to 127.0.0.1 unless --host says otherwise)."""
    import uvicorn

    from ratingrl.app.errors import AppError
    from ratingrl.app.schema import upgrade_database
    from ratingrl.app.server import create_app

    try:
        upgrade = upgrade_database(db)
    except AppError as err:
        raise fail(str(err)) from None
    if upgrade.message:
        typer.echo(upgrade.message, err=True)
    token = operator_token or secrets.token_urlsafe(24)
    if not operator_token:
        typer.echo(f"operator page: http://{host}:{port}/operator#token={token}", err=True)
    os.environ.setdefault("MUJOCO_GL", "egl")
    uvicorn.run(create_app(db, clip_dir, token), host=host, port=port, log_level="warning")
