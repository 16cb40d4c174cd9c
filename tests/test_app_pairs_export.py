"""People's comparisons leave the app as the library's preference-pair dataset: the operator
asks for pairs when creating a project, and ``ratingrl app export --pairs`` writes what
``load_preferences`` reads (left clip first, label 0 / 1 / 0.5), with raters and answer ids."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ratingrl.app import store
from ratingrl.app.db import bytes_to_array
from ratingrl.app.demo import synthetic_segments
from ratingrl.app.schema import open_database
from ratingrl.cli.app import app_cli
from ratingrl.feedback.io import load_preferences


def _cli(*args: str):
    return CliRunner().invoke(app_cli, list(args))


def _pairs_project(db: str) -> dict[str, str]:
    """A project asking for pairs, made with the CLI; 6 pairs queued, raters alice and bob."""
    made = _cli(
        "create-project", "--name", "cmp", "--env", "synthetic/bars", "--clip-length", "10",
        "--asks", "pairs", "--db", db,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "asks for pairs" in made.output
    segs = synthetic_segments(12, 10, 4, 2, seed=2)
    with open_database(db) as database, database.unit() as session:
        project = store.get_project(session)
        assert store.project_asks(project) == "pairs"
        store.add_pairs(session, project, segs.subset(range(6)), segs.subset(range(6, 12)))
        return {name: store.add_rater(session, project, name) for name in ("alice", "bob")}


def _answer(db: str, token: str, choice: str | None, undo: bool = False) -> dict:
    """One rater's answer, as the API stores it; returns what the export should say of it."""
    with open_database(db) as database, database.unit() as session:
        rater = store.rater_for_token(session, token)
        item = store.next_pair(session, rater)
        left, right = store.pair_sides(session, item)
        answer = store.answer_pair(session, rater, item.public_id, choice, skip=choice is None)
        if undo:
            store.undo_last_pair(session, rater)
        return {
            "answer_id": answer.answer_id,
            "pair_id": item.public_id,
            "choice": choice,
            "left": (left.public_id, bytes_to_array(left.obs)),
            "right": (right.public_id, bytes_to_array(right.obs)),
        }


def test_export_pairs_writes_the_preference_dataset_with_raters(db_url, tmp_path):
    tokens = _pairs_project(db_url)
    given = [
        ("alice", _answer(db_url, tokens["alice"], "left")),
        ("bob", _answer(db_url, tokens["bob"], "equal")),
        ("alice", _answer(db_url, tokens["alice"], "right")),
    ]
    _answer(db_url, tokens["bob"], None)  # a skip: no label
    _answer(db_url, tokens["bob"], "left", undo=True)  # withdrawn: no label
    out = tmp_path / "pairs.parquet"
    done = _cli("export", "--pairs", "--out", str(out), "--db", db_url)
    assert done.exit_code == 0, done.output
    assert f"wrote 3 pairs to {out}" in done.output

    data = load_preferences(out)
    assert data.labels.tolist() == [0.0, 0.5, 1.0]
    assert data.source["kind"] == "app" and data.source["env_id"] == "synthetic/bars"
    for i, (_name, answer) in enumerate(given):
        assert np.allclose(data.first.obs[i], answer["left"][1])
        assert np.allclose(data.second.obs[i], answer["right"][1])
    table = pq.read_table(out).to_pydict()
    assert table["rater"] == [name for name, _ in given]
    assert table["answer_id"] == [a["answer_id"] for _, a in given]
    assert table["label_id"] == [str(a["answer_id"]) for _, a in given]
    assert table["pair_id"] == [a["pair_id"] for _, a in given]
    assert table["choice"] == ["left", "equal", "right"]
    assert table["first_clip_id"] == [a["left"][0] for _, a in given]
    assert table["second_clip_id"] == [a["right"][0] for _, a in given]
    assert all(s <= a for s, a in zip(table["shown_at"], table["answered_at"], strict=True))


def test_export_pairs_refusals(db_url, tmp_path):
    _pairs_project(db_url)
    out = tmp_path / "pairs.parquet"
    empty = _cli("export", "--pairs", "--out", str(out), "--db", db_url)
    assert empty.exit_code != 0 and "no pair answers to export yet" in empty.output
    both = _cli("export", "--pairs", "--include-repeats", "--out", str(out), "--db", db_url)
    assert both.exit_code != 0 and "comparisons have no hidden repeats" in both.output
    assert not out.exists()


@pytest.mark.parametrize("asks", ["ratings", "both"])
def test_create_project_asks_ratings_by_default_and_refuses_unknown_modes(db_url, asks):
    extra = [] if asks == "ratings" else ["--asks", asks]
    made = _cli("create-project", "--name", "p", "--env", "synthetic/bars", "--db", db_url, *extra)
    assert made.exit_code == 0, made.output
    with open_database(db_url) as database, database.unit(write=False) as session:
        assert store.project_asks(store.get_project(session)) == asks
    bad = _cli("create-project", "--name", "q", "--env", "x", "--asks", "videos", "--db", db_url)
    assert bad.exit_code != 0 and "asks must be one of ratings, pairs, both" in bad.output
    with open_database(db_url) as database, database.unit(write=False) as session:
        assert store.project_names(session) == ["p"]  # the refused project was not made
