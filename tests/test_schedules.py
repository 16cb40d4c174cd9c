"""When an online run asks for feedback: R4's growing gaps, fixed intervals, explicit steps, a
second kind of feedback sharing the rounds, and a run's configuration turned into its rounds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ratingrl.feedback.schedules import Schedule, ScheduleError, r4_gaps
from ratingrl.rl.config import RunConfig


def test_schedules():
    assert r4_gaps(8) == [1, 1, 2, 3, 3, 3, 4, 4]
    assert Schedule.r4(100, 10, 10_000).steps[:4] == (10_000, 20_000, 40_000, 70_000)
    assert Schedule.interval(25, 10, 100).counts == (10, 10, 5)
    assert Schedule.interval(20, 10, 100, first=30).steps == (30, 130)
    assert Schedule.explicit((5, 9), 5).counts == (3, 2)
    with pytest.raises(ScheduleError, match="entropy pre-training"):
        Schedule.interval(10, 10, 100).check_fits(1000, not_before=500)


def test_bad_schedules_are_named():
    with pytest.raises(ScheduleError, match="the run has only 150 steps"):
        Schedule.interval(20, 10, 100).check_fits(150)
    with pytest.raises(ScheduleError, match="strictly increasing"):
        Schedule.explicit((9, 5), 5)
    with pytest.raises(ScheduleError, match="3 rounds"):
        Schedule.explicit((1, 2, 3), 2)
    with pytest.raises(ScheduleError, match="must be >= 1"):
        Schedule.interval(0, 10, 100)


def test_pair_budget_is_shared_over_the_rating_rounds():
    schedule = Schedule.interval(20, 10, 250)
    shared = schedule.share(15)
    assert shared.steps == schedule.steps and shared.counts == (8, 7)
    assert Schedule.explicit((1, 2, 3), 3).share(5).counts == (2, 2, 1)


def test_a_run_configuration_gives_its_rounds(tiny_config):
    assert tiny_config.schedule_plan() == Schedule((250, 500), (10, 10))
    assert tiny_config.round_count() == 2
    r4 = replace(tiny_config, schedule="r4", schedule_unit=100, budget=30)
    assert r4.schedule_plan().steps == (100, 200, 400)
    explicit = replace(tiny_config, schedule="explicit", schedule_steps=(10, 20, 30), budget=7)
    assert explicit.schedule_plan().counts == (3, 2, 2)
    assert replace(explicit, budget=2).round_count() is None  # reported when the run is checked


def test_without_a_unit_the_schedule_is_fitted_to_the_run():
    # the defaults must run: R4's gaps end at 90% of the run, interval rounds by its middle
    config = RunConfig(env_id="dmc/walker-walk", method="r4")
    r4 = config.schedule_plan()
    assert r4.steps == (3000, 6000, 12000, 21000, 30000, 39000, 51000, 63000, 75000, 90000)
    r4.check_fits(config.total_steps)
    interval = replace(config, schedule="interval", budget=95, per_round=10).schedule_plan()
    assert interval.steps[-1] == 50_000 and len(interval.steps) == 10
    assert sum(interval.counts) == 95
    given = replace(config, schedule_unit=9000).schedule_plan()
    assert given.steps[:3] == (9000, 18000, 36000)  # a unit given is used as it is
