"""Alembic's entry point for the rating app's migrations.

The app runs it through :func:`ratingrl.app.schema.upgrade_database`, which hands over its
connection (``config.attributes["connection"]``) so the check, the stamp and the upgrade are one
transaction. A developer writing the next revision uses the same configuration, with a URL::

    from alembic import command
    from ratingrl.app.schema import alembic_config
    command.revision(alembic_config(url="sqlite:///ratings.db"), "what changes", autogenerate=True)

(then edit the generated file in ``versions/``; give it the next number as its revision id).
"""

from alembic import context

from ratingrl.app.db import Base, make_engine


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    # batch mode: SQLite alters a table by copying it, which Alembic does only in batch mode
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(config) -> None:  # type: ignore[no-untyped-def]
    if context.is_offline_mode():
        raise RuntimeError("the rating app's migrations run online only (no --sql)")
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if hasattr(context, "config"):  # false when merely imported (e.g. pytest's doctest collection)
    _run(context.config)
