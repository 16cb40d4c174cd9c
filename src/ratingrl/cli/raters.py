"""The operator's commands for raters (registered on ``app_cli``):

    ratingrl app add-rater alice           # prints alice's token (stdout) and link (stderr)
    ratingrl app raters                    # who rated how much, when last, who is revoked
    ratingrl app revoke alice              # alice's token gets 401 from now on; ratings stay
    ratingrl app rotate-token alice        # a new token for alice; the old one gets 401

A running server sees each change at its next request: tokens are checked in the database.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ratingrl.cli.app import DEFAULT_DB, DbOpt, ProjectOpt, app_cli, open_db
from ratingrl.cli.common import fail

__all__ = ["add_rater_command", "raters_command", "revoke_command", "rotate_token_command"]

UrlOpt = Annotated[str, typer.Option(help="server address for the printed link")]
NameArg = Annotated[str, typer.Argument(help="the rater's name")]


def _print_token(token: str, url: str) -> None:
    typer.echo(token)
    typer.echo(f"link: {url.rstrip('/')}/#token={token}", err=True)


@app_cli.command("add-rater")
def add_rater_command(
    name: NameArg,
    url: UrlOpt = "http://127.0.0.1:8000",
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
    _print_token(token, url)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@app_cli.command("raters")
def raters_command(project: ProjectOpt = None, db: DbOpt = DEFAULT_DB) -> None:
    """List the project's raters: ratings and pairs given, skips, last activity, active."""
    from ratingrl.app import store

    try:
        with open_db(db) as database, database.unit(write=False) as session:
            proj = store.get_project(session, project)
            raters = store.rater_summaries(session, proj)
    except store.AppError as err:
        raise fail(str(err)) from None
    if not raters:
        typer.echo(f"project {proj.name!r} has no raters (add one: ratingrl app add-rater NAME)")
        return
    width = max(4, *(len(r.name) for r in raters))

    def row(name: str, active: str, ratings: object, pairs: object, skips: object, last: str):
        return f"{name:<{width}}  {active:<6}  {ratings:>7}  {pairs:>7}  {skips:>7}  {last}"

    typer.echo(row("name", "active", "ratings", "pairs", "skips", "last active"))
    for r in raters:
        active = "yes" if r.active else "no"
        typer.echo(row(r.name, active, r.ratings, r.pairs, r.skips, _when(r.last_active)))


@app_cli.command("revoke")
def revoke_command(name: NameArg, project: ProjectOpt = None, db: DbOpt = DEFAULT_DB) -> None:
    """Refuse a rater's token from now on (401); their ratings stay. Undo with rotate-token."""
    from ratingrl.app import store

    try:
        with open_db(db) as database, database.unit() as session:
            rater = store.revoke_rater(session, store.get_project(session, project), name)
    except store.AppError as err:
        raise fail(str(err)) from None
    typer.echo(
        f"revoked {rater.name!r}: their token is refused from now on; their ratings stay "
        "(ratingrl app rotate-token gives them a new one)"
    )


@app_cli.command("rotate-token")
def rotate_token_command(
    name: NameArg,
    url: UrlOpt = "http://127.0.0.1:8000",
    project: ProjectOpt = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Print a new token for a rater; the old one is refused from now on (a revoked rater is
    active again)."""
    from ratingrl.app import store

    try:
        with open_db(db) as database, database.unit() as session:
            token = store.rotate_token(session, store.get_project(session, project), name)
    except store.AppError as err:
        raise fail(str(err)) from None
    _print_token(token, url)
