"""``ratingrl train --ratings-db URL`` takes people's labels from the rating app: ratings from its
rating page, pairs from its comparison page (``--method bt``), or both (``--preference-budget``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ratingrl.cli import app

runner = CliRunner()
RUN = [
    "train", "--env", "Pendulum-v1", "--algo", "ppo", "--method", "rbrl", "--steps", "384",
    "--n-steps", "128", "--net-arch", "16", "--reward-hidden", "16", "--horizon", "20",
    "--max-episode-steps", "60", "--candidate-episodes", "4", "--budget", "4", "--per-round",
    "2", "--schedule", "interval", "--schedule-unit", "128", "--eval-every", "384",
    "--eval-episodes", "1", "--no-progress",
]  # fmt: skip


def _project(db: str, asks: str) -> None:
    args = ["app", "create-project", "--name", "p", "--env", "Pendulum-v1", "--db", db]
    scale = ["--scale", "bad,ok,good", "--clip-length", "20", "--asks", asks]
    result = runner.invoke(app, [*args, *scale])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_people_answer_ratings_and_pairs_of_one_run(tmp_path, db_url, run_sql):
    _project(db_url, "both")
    out = tmp_path / "run"
    args = [*RUN, "--preference-budget", "2", "--ratings-db", db_url, "--out", str(out)]
    result = runner.invoke(app, args)  # nobody answers: the run trains on and finishes
    assert result.exit_code == 0, result.output
    # both pages got the run's queries: 4 clips to rate, 2 pairs to compare
    assert run_sql(db_url, "SELECT count(*) FROM segments")[0][0] == 4
    assert run_sql(db_url, "SELECT count(*) FROM pairs")[0][0] == 2
    assert "0 labels" in result.output
    # the queries are tagged by the run folder: a resumed run's sources find them again
    tags = run_sql(db_url, "SELECT DISTINCT source_tag FROM segments")
    assert len(tags) == 1 and tags[0][0].startswith("ratings-")


def test_pairs_need_a_project_that_asks_for_them(tmp_path, db_url):
    _project(db_url, "ratings")
    out = tmp_path / "run"
    args = [*RUN, "--preference-budget", "2", "--ratings-db", db_url, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "asks its raters for ratings only" in result.output
    assert not out.exists()


def test_a_run_on_another_environment_than_the_project_is_refused(tmp_path, db_url):
    _project(db_url, "ratings")  # a Pendulum-v1 project
    out = tmp_path / "run"
    args = [*RUN, "--ratings-db", db_url, "--out", str(out)]
    args[args.index("Pendulum-v1")] = "dmc/cartpole-balance"
    for extra in ([], ["--check"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert "--env dmc/cartpole-balance" in result.output and "Pendulum-v1" in result.output
    assert not out.exists()


def test_check_with_people_opens_the_project_and_builds_no_teacher(tmp_path, db_url):
    import json

    # HalfCheetah's simulated teacher would need --rating-range; people need none
    args = ["app", "create-project", "--name", "c", "--env", "HalfCheetah-v5", "--db", db_url]
    assert runner.invoke(app, [*args, "--clip-length", "20"]).exit_code == 0
    run = [*RUN, "--ratings-db", db_url, "--check"]
    run[run.index("Pendulum-v1")] = "HalfCheetah-v5"
    result = runner.invoke(app, run)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert "teacher" not in plan and plan["source"]["class"] == "AppRatingSource"
    assert plan["people"] == {"project": "c", "env_id": "HalfCheetah-v5", "repeats": False}
    raters = [*run[:run.index("rbrl")], "raters", *run[run.index("rbrl") + 1 :]]
    plan = json.loads(runner.invoke(app, raters).output)  # it weighs raters by their repeats
    assert plan["people"]["repeats"] is True
    without = runner.invoke(app, [a for a in run if a not in ("--ratings-db", db_url)])
    assert without.exit_code == 2 and "--rating-range" in without.output
