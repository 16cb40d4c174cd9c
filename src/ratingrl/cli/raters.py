"""The operator's commands for raters: ``ratingrl app add-rater`` (registered on ``app_cli``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ratingrl.cli.app import DEFAULT_DB, DbOpt, ProjectOpt, app_cli, open_db
from ratingrl.cli.common import fail

__all__ = ["add_rater_command"]


@app_cli.command("add-rater")
def add_rater_command(
    name: Annotated[str, typer.Argument(help="the rater's name")],
    url: Annotated[str, typer.Option(help="server address for the printed link")] = (
        "http://127.0.0.1:8000"
    ),
    project: ProjectOpt = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Create a rater and print their token (only its hash is stored: keep it)."""
    from ratingrl.app import store

    try:
        with open_db(db) as database, database.unit() as session:
            token = store.add_rater(session, store.get_project(session, project), name)
    except store.AppError as err:
        raise fail(str(err)) from None
    typer.echo(token)
    typer.echo(f"link: {url.rstrip('/')}/#token={token}", err=True)
