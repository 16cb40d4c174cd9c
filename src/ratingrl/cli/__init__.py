"""The ``ratingrl`` command: one module per group of commands, each a thin wrapper that parses
options and calls the library.

    ratingrl pool | rate | reward train          (ratingrl.cli.data)
    ratingrl train                               (ratingrl.cli.train; options from RunConfig)
    ratingrl bench fidelity | ordinal, plot      (ratingrl.cli.bench)
    ratingrl serve                               (ratingrl.cli.serve)
    ratingrl app ...                             (ratingrl.cli.app, ratingrl.cli.raters)
    ratingrl demo                                (ratingrl.cli.demo)
"""

from __future__ import annotations

import typer

from ratingrl import __version__
from ratingrl.cli import bench, data, demo, sweep, train
from ratingrl.cli.app import app_cli
from ratingrl.cli.serve import serve_command

__all__ = ["app"]

app = typer.Typer(
    help="Reward functions and policies from ratings (RbRL, R4, multi-task, Bradley-Terry).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ratingrl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print ratingrl's version (the one the package and its wheel carry) and exit.",
    ),
) -> None:
    """Reward functions and policies from ratings (RbRL, R4, multi-task, Bradley-Terry)."""


app.command()(data.pool)
app.command()(data.rate)
app.add_typer(data.reward_app, name="reward")
app.command("train")(train.train_command)
app.add_typer(bench.bench_app, name="bench")
app.command()(bench.plot)
app.command("serve")(serve_command)
app.add_typer(app_cli, name="app")
app.command()(demo.demo)
sweep.register(app)  # ratingrl sweep | results | report (ratingrl.cli.sweep)
