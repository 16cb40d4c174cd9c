"""The rating database's schema migrations: fresh databases, older ones, refused ones."""

from __future__ import annotations

import logging

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import inspect
from typer.testing import CliRunner

from ratingrl.app.db import Base, make_engine, make_sessionmaker
from ratingrl.app.errors import SchemaError
from ratingrl.app.schema import (
    BASELINE_COLUMNS,
    BASELINE_REVISION,
    alembic_config,
    head_revision,
    open_database,
    upgrade_database,
)
from ratingrl.app.server import create_app
from ratingrl.cli.app import app_cli
from ratingrl.feedback.io import load_rated


def _version(run_sql, db: str) -> list[tuple]:
    return run_sql(db, "SELECT version_num FROM alembic_version")


def _has_version_table(db: str) -> bool:
    engine = make_engine(db)
    try:
        return inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def _schema(url: str) -> dict:
    """Everything about the tables a migration could get wrong, in a comparable form."""
    engine = make_engine(url)
    inspector = inspect(engine)
    out = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
        }
    engine.dispose()
    return out


def _old_database(run_sql, rate_small_project, url: str) -> None:
    """A database as ratingrl made it before migrations: the baseline tables, ratings, no version.

    Made with today's store at head, then taken down to the baseline revision (every revision's
    downgrade keeps the baseline tables' rows) and stripped of its version table.
    """
    engine = make_engine(url)
    upgrade_database(engine)
    with make_sessionmaker(engine)() as session:  # committed as the old store did
        rate_small_project(session, "old", (3, 0, 2))
        session.commit()
    engine.dispose()
    command.downgrade(alembic_config(url=url), BASELINE_REVISION)
    run_sql(url, "DROP TABLE alembic_version")


def test_a_fresh_database_gets_the_schema_the_models_describe(make_db_url, run_sql):
    migrated, created = make_db_url(), make_db_url()
    upgrade = upgrade_database(migrated)
    assert upgrade.created and upgrade.message is None
    assert upgrade.before is None and upgrade.after == head_revision()
    assert _version(run_sql, migrated) == [(head_revision(),)]
    engine = make_engine(created)
    Base.metadata.create_all(engine)
    engine.dispose()
    schema = _schema(migrated)
    assert schema == _schema(created)
    baseline = make_db_url()  # the frozen record an old database is checked against
    command.upgrade(alembic_config(url=baseline), BASELINE_REVISION)
    schema = _schema(baseline)
    columns = {table: tuple(c[0] for c in s["columns"]) for table, s in schema.items()}
    assert columns == BASELINE_COLUMNS
    again = upgrade_database(migrated)  # at head: nothing to do, nothing said
    assert again.before == again.after == head_revision() and again.message is None


def test_an_old_database_keeps_its_ratings_and_is_brought_to_head(
    tmp_path, db_url, run_sql, rate_small_project
):
    db = db_url
    _old_database(run_sql, rate_small_project, db)
    assert not _has_version_table(db)
    before = run_sql(db, "SELECT * FROM ratings ORDER BY id")
    runner = CliRunner()
    out = tmp_path / "out.parquet"
    exported = runner.invoke(app_cli, ["export", "--out", str(out), "--db", db])
    assert exported.exit_code == 0, exported.output
    message = [line for line in exported.stderr.splitlines() if "rating database" in line]
    assert len(message) == 1
    assert "made before schema migrations" in message[0]
    assert f"revision {BASELINE_REVISION}" in message[0]
    assert _version(run_sql, db) == [(head_revision(),)]
    assert run_sql(db, "SELECT * FROM ratings ORDER BY id") == before
    assert sorted(load_rated(out).ratings.tolist()) == [0, 2, 3]
    assert load_rated(out).rater.tolist() == ["ann"] * 3
    # later commands find it current and say nothing about the schema
    rater = runner.invoke(app_cli, ["add-rater", "bo", "--db", db])
    assert rater.exit_code == 0 and "rating database" not in rater.output


def test_the_server_upgrades_an_old_database_at_startup(
    tmp_path, caplog, db_url, run_sql, rate_small_project
):
    db = db_url
    _old_database(run_sql, rate_small_project, db)
    with caplog.at_level(logging.WARNING, logger="ratingrl.app.server"):
        app = create_app(db, tmp_path / "clips", "operator-token")
    assert any("made before schema migrations" in r.getMessage() for r in caplog.records)
    assert _version(run_sql, db) == [(head_revision(),)]
    with TestClient(app) as client:
        stats = client.get(
            "/api/operator/stats", headers={"Authorization": "Bearer operator-token"}
        ).json()
    assert stats["projects"][0]["ratings"] == 3


def test_tables_that_are_not_ratingrls_are_refused_and_left_alone(
    make_db_url, run_sql, rate_small_project
):
    db = make_db_url()
    run_sql(db, "CREATE TABLE ratings (id INTEGER PRIMARY KEY, stars INTEGER)")
    run_sql(db, "INSERT INTO ratings (id, stars) VALUES (1, 5)")
    with pytest.raises(SchemaError, match="not a database ratingrl made"):
        upgrade_database(db)
    assert not _has_version_table(db)
    assert run_sql(db, "SELECT * FROM ratings") == [(1, 5)]
    refused = CliRunner().invoke(app_cli, ["add-rater", "x", "--db", db])
    assert refused.exit_code == 2 and "not a database ratingrl made" in refused.output

    changed = make_db_url()
    _old_database(run_sql, rate_small_project, changed)
    run_sql(changed, "ALTER TABLE raters ADD COLUMN email TEXT")
    with pytest.raises(SchemaError, match="'raters' has columns"):
        open_database(changed)
    assert not _has_version_table(changed)


def test_a_database_from_a_newer_ratingrl_is_refused(db_url, run_sql):
    db = db_url
    upgrade_database(db)
    run_sql(db, "UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(SchemaError, match="'0999'.*upgrade ratingrl"):
        upgrade_database(db)
    assert _version(run_sql, db) == [("0999",)]
