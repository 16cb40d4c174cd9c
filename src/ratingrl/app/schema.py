"""The rating database's schema revisions, applied by the app itself when it opens a database.

The database holds people's ratings, so its schema changes only through Alembic migrations
(``app/migrations/versions``), never by ``create_all``. :func:`upgrade_database` is called by
``ratingrl serve``, every ``ratingrl app`` command, the server and the training source:

* an empty database gets every migration, up to the newest ("head");
* a database made by ratingrl before it had migrations (the tables, no ``alembic_version``) is
  checked against the baseline schema, stamped as the baseline revision, then upgraded;
* a database at head is left alone (one small read);
* a database at a revision this ratingrl does not know (made by a newer one) is refused.

All of it runs in one transaction (on SQLite ``BEGIN IMMEDIATE``, on PostgreSQL with an advisory
lock: one process upgrades while the others wait, then find it current), so an interrupted
upgrade leaves the database as it was. Alembic is configured in
code from the package's own folder: no ``alembic.ini`` is needed at run time.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from ratingrl.app.db import WRITE_OPTION, make_engine, make_sessionmaker, unit_of_work
from ratingrl.app.errors import SchemaError

__all__ = [
    "MIGRATIONS_DIR",
    "BASELINE_REVISION",
    "BASELINE_COLUMNS",
    "SchemaUpgrade",
    "Database",
    "alembic_config",
    "head_revision",
    "upgrade_database",
    "open_database",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BASELINE_REVISION = "0001"
BASELINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "projects": (
        "id", "name", "env_id", "scale_names", "clip_length", "fps", "width", "height",
        "ratings_per_clip", "repeat_every", "instructions", "created_at",
    ),
    "segments": (
        "id", "public_id", "project_id", "obs", "acts", "true_rewards", "states", "episode_id",
        "start", "priority", "source_tag", "reference_level", "created_at",
    ),
    "raters": ("id", "project_id", "name", "token_hash", "active", "created_at"),
    "queue_items": (
        "id", "public_id", "rater_id", "segment_id", "is_repeat", "status", "due_after",
        "shown_at", "created_at",
    ),
    "ratings": (
        "id", "project_id", "item_id", "rater_id", "segment_id", "value", "scale_n", "status",
        "is_repeat", "shown_at", "answered_at", "undoes_id",
    ),
}  # fmt: skip
"""The tables ``create_all`` made before migrations existed: frozen, whatever the models become."""


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration for the app's migrations, built in code (no ini file).

    ``connection`` is the one the migrations run on (in its transaction); ``url`` is for a
    developer's own Alembic commands (e.g. ``command.revision(..., autogenerate=True)``).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this version of ratingrl knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass(frozen=True)
class SchemaUpgrade:
    """What :func:`upgrade_database` found and did.

    ``before`` is the revision the database was at (None: no ``alembic_version`` table);
    ``adopted`` is True when its tables came from before migrations and were stamped as the
    baseline; ``after`` is the revision it is at now (always the head).
    """

    database: str
    before: str | None
    after: str
    adopted: bool = False

    @property
    def created(self) -> bool:
        """The database was empty and got the whole schema."""
        return self.before is None and not self.adopted

    @property
    def message(self) -> str | None:
        """One line for the operator when an existing database changed, else None."""
        if self.adopted:
            upgraded = "" if self.after == BASELINE_REVISION else f", then upgraded to {self.after}"
            return (
                f"rating database {self.database}: made before schema migrations; its tables "
                f"match, marked as revision {BASELINE_REVISION}{upgraded}"
            )
        if self.before is not None and self.before != self.after:
            return (
                f"rating database {self.database}: upgraded the schema from revision "
                f"{self.before} to {self.after}"
            )
        return None


def _check_baseline(connection: Connection, found: set[str]) -> None:
    """Refuse tables that are not the pre-migration schema (nothing is stamped or changed)."""
    missing = sorted(set(BASELINE_COLUMNS) - found)
    if missing:
        raise SchemaError(
            f"the database has some of the rating app's tables but not {missing}: "
            "not a database ratingrl made; use a new database file or URL"
        )
    inspector = inspect(connection)
    for table, expected in BASELINE_COLUMNS.items():
        columns = {c["name"] for c in inspector.get_columns(table)}
        if columns != set(expected):
            raise SchemaError(
                f"table {table!r} has columns {sorted(columns)}, expected {sorted(expected)}: "
                "not a schema ratingrl made, so it is not upgraded"
            )


_PG_UPGRADE_LOCK = 0x72617469  # any constant shared by every ratingrl process


def _upgrade(connection: Connection, name: str) -> SchemaUpgrade:
    if connection.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE does this there
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})")
    config = alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    before = MigrationContext.configure(connection).get_current_revision()
    if before == head:
        return SchemaUpgrade(name, before, head)
    if before is not None:
        try:
            script.get_revision(before)
        except CommandError:
            raise SchemaError(
                f"the rating database {name} is at schema revision {before!r}, which this "
                f"ratingrl does not know (newest known: {head!r}): upgrade ratingrl"
            ) from None
    adopted = False
    if before is None:
        found = set(inspect(connection).get_table_names()) & set(BASELINE_COLUMNS)
        if found:
            _check_baseline(connection, found)
            command.stamp(config, BASELINE_REVISION)
            adopted = True
    command.upgrade(config, "head")
    return SchemaUpgrade(name, before, head, adopted)


def upgrade_database(target: str | Engine) -> SchemaUpgrade:
    """Bring the database at ``target`` (URL or engine) to the newest schema revision.

    Safe to call on every start: a database at head costs one read, in a plain transaction
    that takes no write lock (an upgrade takes it, and looks again inside it). Raises
    :class:`~ratingrl.app.errors.SchemaError`, changing nothing, when the tables are not a
    schema ratingrl made or the revision is newer than this ratingrl.
    """
    engine = make_engine(target) if isinstance(target, str) else target
    name = engine.url.render_as_string(hide_password=True)
    try:
        # the usual case, a database at head, is a plain read: no write lock for a CLI export
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: False})
            with connection.begin():
                current = MigrationContext.configure(connection).get_current_revision()
        head = head_revision()
        if current == head:
            return SchemaUpgrade(name, current, head)
        with engine.begin() as connection:  # locked; checks again (another process may upgrade)
            return _upgrade(connection, name)
    finally:
        if isinstance(target, str):
            engine.dispose()


@dataclass
class Database:
    """An open rating database: its engine, sessions and what opening it did to the schema."""

    engine: Engine
    sessions: sessionmaker
    upgrade: SchemaUpgrade

    def unit(self, write: bool = True) -> AbstractContextManager[Session]:
        """One unit of work (a transaction committed when the block ends normally).

        ``write=False`` for a unit that only reads: on SQLite it leaves the write lock alone.
        """
        return unit_of_work(self.sessions, write=write)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_database(db_url: str) -> Database:
    """Open ``db_url`` for the app, first bringing its schema to head (see the module doc).

    Callers show ``database.upgrade.message`` when it is not None: the one line that tells an
    operator an older database was upgraded.
    """
    engine = make_engine(db_url)
    try:
        upgrade = upgrade_database(engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(engine, make_sessionmaker(engine), upgrade)
