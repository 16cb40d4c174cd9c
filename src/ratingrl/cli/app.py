"""The operator's commands: ``ratingrl app ...`` (a Typer sub-app; ``ratingrl serve`` is in
:mod:`ratingrl.cli.serve`, the rater commands in :mod:`ratingrl.cli.raters`).

ratingrl app create-project --name cheetah --env HalfCheetah-v5 --scale bad,poor,good,excellent
ratingrl app create-project --name cheetah-pairs --env HalfCheetah-v5 --asks pairs
ratingrl app add-segments --from pool.parquet --limit 200
ratingrl app add-segments --from good.parquet --reference-level 3
ratingrl app add-rater alice                  # prints alice's token and link
ratingrl serve --db sqlite:///ratings.db      # 127.0.0.1:8000 unless --host is given
ratingrl app export --out ratings.parquet
ratingrl app export --pairs --out pairs.parquet   # people's comparisons

Each command is one unit of work: it commits once at its end, or changes nothing when it fails.
Each first brings the database to the current schema revision and says so when it upgraded an
older one (:func:`ratingrl.app.schema.upgrade_database`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from ratingrl.cli.common import fail

if TYPE_CHECKING:
    from ratingrl.app.schema import Database

__all__ = ["app_cli", "DbOpt", "ProjectOpt", "DEFAULT_DB", "open_db"]

app_cli = typer.Typer(
    help="The rating app: projects, segments, raters and export.", no_args_is_help=True
)

DEFAULT_DB = "sqlite:///ratings.db"
DbOpt = Annotated[
    str, typer.Option("--db", help="SQLAlchemy URL; SQLite file by default", envvar="RATINGRL_DB")
]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", help="project name (default: the only project)")
]


def open_db(db: str) -> Database:
    """The database at ``db`` with its schema at head; one line on stderr if it was upgraded."""
    from ratingrl.app.schema import open_database

    database = open_database(db)
    if database.upgrade.message:
        typer.echo(database.upgrade.message, err=True)
    return database


@app_cli.command("create-project")
def create_project_command(
    name: Annotated[str, typer.Option(help="project name")],
    env: Annotated[str, typer.Option("--env", help="Gymnasium id or dmc/domain-task")],
    scale: Annotated[
        str, typer.Option(help="level names, worst first, comma-separated")
    ] = "bad,poor,good,excellent",
    clip_length: Annotated[int, typer.Option(help="steps per clip (segment horizon)")] = 50,
    fps: Annotated[int, typer.Option(help="frames per second of the clips")] = 25,
    size: Annotated[int, typer.Option(help="clip width and height in pixels")] = 240,
    ratings_per_clip: Annotated[
        int, typer.Option(help="raters per clip (>1 measures agreement)")
    ] = 1,
    repeat_every: Annotated[
        int, typer.Option(help="a hidden repeat every N ratings per rater (0: none)")
    ] = 10,
    instructions: Annotated[str, typer.Option(help="text shown to raters")] = "",
    asks: Annotated[
        str, typer.Option(help="what raters are asked for: ratings, pairs (comparisons) or both")
    ] = "ratings",
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Create a project: environment, rating scale, clip length and what raters are asked."""
    from ratingrl.app import store
    from ratingrl.feedback.segments import FeedbackError, RatingScale

    names = tuple(s.strip() for s in scale.split(",") if s.strip())
    try:
        config = store.ProjectConfig(
            name=name,
            env_id=env,
            scale=RatingScale(len(names), names),
            clip_length=clip_length,
            fps=fps,
            width=size,
            height=size,
            ratings_per_clip=ratings_per_clip,
            repeat_every=repeat_every,
            instructions=instructions,
        )
        with open_db(db) as database, database.unit() as session:
            store.set_asks(session, store.create_project(session, config), asks)
    except (store.AppError, FeedbackError) as err:
        raise fail(str(err)) from None
    typer.echo(
        f"created project {name!r}: {env}, scale {list(names)}, clips of {clip_length}, "
        f"asks for {asks}"
    )


def _load_any(path: Path):  # type: ignore[no-untyped-def]
    """Segments from a pool file, a rated dataset, or a run directory's feedback.parquet."""
    from ratingrl.feedback.io import load_rated, load_segments, read_metadata

    if path.is_dir():
        path = path / "feedback.parquet"
    kind = read_metadata(path).get("kind")
    if kind == "segments":
        return load_segments(path)[0]
    if kind == "rated_segments":
        return load_rated(path).segments
    raise ValueError(f"{str(path)!r} holds {kind!r}; expected segments or rated_segments")


@app_cli.command("add-segments")
def add_segments_command(
    source: Annotated[
        Path, typer.Option("--from", help="pool/segments Parquet, rated dataset, or run dir")
    ],
    limit: Annotated[int, typer.Option(help="add at most this many (random sample)")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the sample")] = 0,
    priority: Annotated[float, typer.Option(help="higher is shown first")] = 0.0,
    reference_level: Annotated[
        int | None, typer.Option(help="set the first segment as the example clip of this level")
    ] = None,
    project: ProjectOpt = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Add segments to the rating queue (longer segments are cut to the project's clip length).

    Simulator states in the file (pools record them) are stored too, so clips show the robot.
    """
    from ratingrl.app import store
    from ratingrl.feedback.segments import FeedbackError, SegmentSet

    try:
        segments = _load_any(source)
        with open_db(db) as database, database.unit() as session:
            proj = store.get_project(session, project)
            h = proj.clip_length
            if segments.horizon < h:
                raise store.AppError(f"segments have {segments.horizon} steps, clips need {h}")
            segments = SegmentSet(
                segments.obs[:, :h],
                segments.acts[:, :h],
                None if segments.true_rewards is None else segments.true_rewards[:, :h],
                segments.episode_id,
                segments.start,
                states=None if segments.states is None else segments.states[:, :h],
            )
            if limit and limit < len(segments):
                rng = np.random.default_rng(seed)
                segments = segments.subset(np.sort(rng.choice(len(segments), limit, False)))
            if reference_level is not None:
                store.add_reference(session, proj, segments, reference_level)
            else:
                ids = store.add_segments(session, proj, segments, priority, source_tag="cli")
    except (store.AppError, FeedbackError, ValueError, OSError) as err:
        raise fail(str(err)) from None
    if reference_level is not None:
        typer.echo(f"set the example clip of level {reference_level}")
    else:
        typer.echo(f"queued {len(ids)} segments in project {proj.name!r}")


@app_cli.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write")],
    include_repeats: Annotated[bool, typer.Option(help="also export hidden repeats")] = False,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="export people's comparisons (preference pairs)")
    ] = False,
    project: ProjectOpt = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Write the ratings (or, with --pairs, the comparisons) as the Parquet feedback dataset,
    with rater ids and timestamps."""
    from ratingrl.app import store
    from ratingrl.app.export import read_export, read_pairs_export, write_export, write_pairs_export

    if pairs and include_repeats:
        raise fail("--include-repeats is for ratings: comparisons have no hidden repeats")
    try:
        # a read: no write lock, so raters and a training run go on while the export reads
        with open_db(db) as database, database.unit(write=False) as session:
            proj = store.get_project(session, project)
            if pairs:
                data = read_pairs_export(session, proj)
            else:
                data = read_export(session, proj, include_repeats)
        # after the transaction: the file is written (and synced) with no database open
        n = write_pairs_export(data, out) if pairs else write_export(data, out)
    except (store.AppError, OSError) as err:
        raise fail(str(err)) from None
    typer.echo(f"wrote {n} {'pairs' if pairs else 'ratings'} to {out}")


# the rater commands register themselves on app_cli (their module imports the names above)
from ratingrl.cli import raters as _raters  # noqa: E402, F401
