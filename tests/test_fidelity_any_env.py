"""Fidelity benchmarks on any environment: pools sized in segments, requests a pool cannot serve.

Envs whose episodes end early (Hopper falls over) used to give pools a few hundred segments
long, and asking the benchmark for more ratings ended in a traceback from a worker. Here: a
level of behaviour is rolled out until it gives its segments (bounded), pools of envs that never
end early are what they were, and a request too large is one line naming the flag and the limit.
"""

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.experiments.fidelity import FidelityConfig, RequestError, check_requests
from ratingrl.feedback.io import save_segments
from ratingrl.feedback.pool import (
    PoolSpec,
    cached_pool,
    collect_level,
    pool_path,
    short_levels,
)
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.segments import FeedbackError, SegmentSet
from ratingrl.feedback.synthetic import linear_segments
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.training import TrainerConfig

runner = CliRunner()
# 3 levels (one snapshot, three noise levels) x 2 episodes x 3 segments of 50 steps
TINY_POOL = ["--env", "Pendulum-v1", "--pool-steps", "0", "--pool-episodes", "2",
             "--pool-max-steps", "100"]  # fmt: skip


def _random(env_id: str, seed: int = 0):
    from ratingrl.feedback.envs import make_env

    env = make_env(env_id)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    return random_policy(low, high, np.random.default_rng(seed))


# -- pools sized in segments -----------------------------------------------------------------
def test_a_level_of_an_env_that_ends_early_is_rolled_out_until_it_gives_its_segments():
    # random Hopper falls over in ~20 steps: 2 episodes give a few 10-step segments, not 40
    spec = PoolSpec("Hopper-v5", horizon=10, stride=5, train_steps=(0,), episodes_per_policy=2,
                    max_episode_steps=200, segments_per_level=40)  # fmt: skip
    first = collect_episodes("Hopper-v5", _random("Hopper-v5"), 2, seed=0, max_steps=200)
    assert len(segment_episodes(first, 10, 5)) < 40 and max(e.length for e in first) < 200

    level = collect_level(spec, _random("Hopper-v5"), "random", 0, first_episode_id=7)
    episodes = level.episodes
    segments = segment_episodes(episodes, 10, 5)
    assert len(segments) == level.segments >= 40
    assert level.steps >= sum(e.length for e in episodes)
    assert len(episodes) > 2
    assert [e.episode_id for e in episodes] == list(range(7, 7 + len(episodes)))
    assert len({e.length for e in episodes}) > 1  # real falls, not a time limit
    # after the first episodes only those long enough for a segment are kept
    assert all(e.length >= 10 for e in episodes[2:])
    assert level.episodes_run >= len(episodes)
    # the first episodes are those a pool sized in episodes held: same seeds, same actions
    np.testing.assert_array_equal(episodes[0].acts, first[0].acts)
    np.testing.assert_array_equal(episodes[1].obs, first[1].obs)


def test_a_level_that_cannot_give_its_segments_stops_at_its_step_budget():
    # 200-step segments from a policy that falls within ~20 steps: never; the budget ends it
    spec = PoolSpec("Hopper-v5", horizon=200, stride=50, train_steps=(0,), episodes_per_policy=2,
                    max_episode_steps=1000, segments_per_level=5, max_level_steps=600)  # fmt: skip
    with pytest.raises(FeedbackError) as caught:
        collect_level(spec, _random("Hopper-v5"), "ppo0+noise1", 0)
    message = str(caught.value)
    assert "\n" not in message
    assert "level ppo0+noise1 gave 0 of its 5 segments" in message
    steps = int(re.search(r"in ([\d,]+) steps", message).group(1).replace(",", ""))
    assert 60 <= steps < 1200  # a tenth of the budget at a hopeless rate, or the budget
    assert "max_level_steps=600" in message and "segments_per_level" in message


def test_a_level_of_an_env_that_never_ends_early_is_what_its_episodes_gave():
    spec = PoolSpec("Pendulum-v1", horizon=50, stride=25, train_steps=(0,), episodes_per_policy=3,
                    max_episode_steps=100)  # fmt: skip
    assert spec.level_target == 3 * 3  # three full episodes of three segments
    level = collect_level(spec, _random("Pendulum-v1"), "random", 2, first_episode_id=5).episodes
    before = collect_episodes(
        "Pendulum-v1", _random("Pendulum-v1"), 3, seed=2 * 1000, max_steps=100,
        policy_name="random", first_episode_id=5,
    )  # fmt: skip
    assert len(level) == 3
    for a, b in zip(level, before, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.rewards, b.rewards)


def test_a_default_spec_keeps_its_cache_file_and_a_set_target_gets_its_own():
    default = PoolSpec("HalfCheetah-v5")
    # the name the HalfCheetah-v5 pool has been cached under since pools were sized in episodes
    assert pool_path(default, "/c").name == "HalfCheetah-v5-5dcc32477a40.parquet"
    assert "segments_per_level" not in default.to_dict()
    assert default.level_target == 4 * 39
    larger = PoolSpec("HalfCheetah-v5", segments_per_level=300)
    assert larger.to_dict()["segments_per_level"] == 300
    assert pool_path(larger, "/c") != pool_path(default, "/c")
    with pytest.raises(FeedbackError, match="segments_per_level must be a whole number >= 1"):
        PoolSpec("Hopper-v5", segments_per_level=0)


def _levelled(counts: dict[str, int]) -> SegmentSet:
    """Segments whose info says which level made each episode (one episode per level)."""
    n = sum(counts.values())
    base = linear_segments(n)
    ids = np.repeat(np.arange(len(counts)), list(counts.values()))
    episodes = {str(i): {"policy": name, "return": 0.0} for i, name in enumerate(counts)}
    return SegmentSet(base.obs, base.acts, base.true_rewards, ids, np.zeros(n, int),
                      {"episodes": episodes})  # fmt: skip


def test_a_cached_pool_with_a_level_short_of_its_target_is_built_again(tmp_path):
    spec = PoolSpec("Hopper-v5", horizon=10, max_episode_steps=10, episodes_per_policy=4)
    assert spec.level_target == 4
    short = _levelled({"ppo0+noise0": 4, "ppo0+noise1": 1})  # sized in episodes, Hopper fell
    assert short_levels(spec, short) == {"ppo0+noise1": 1}
    save_segments(short, pool_path(spec, tmp_path), spec=spec.to_dict())
    built = []

    def build(s):
        built.append(s)
        return _levelled({"ppo0+noise0": 4, "ppo0+noise1": 6})

    assert len(cached_pool(spec, build, tmp_path)) == 10 and len(built) == 1
    assert len(cached_pool(spec, build, tmp_path)) == 10 and len(built) == 1  # now it is kept


def test_a_pool_on_an_env_that_ends_early_reaches_every_level_target(tmp_path):
    from ratingrl.rl.behaviour import build_pool

    spec = PoolSpec("Hopper-v5", horizon=20, stride=10, train_steps=(0,), episodes_per_policy=2,
                    max_episode_steps=300, segments_per_level=25)  # fmt: skip
    pool = cached_pool(spec, lambda s: build_pool(s, progress=False), tmp_path)
    levels = {e["policy"] for e in pool.info["episodes"].values()}
    assert levels == {"ppo0+noise0", "ppo0+noise0.3", "ppo0+noise1"}
    assert short_levels(spec, pool) == {}
    assert len(pool) >= 3 * 25
    assert len(pool.info["episodes"]) > 3 * 2  # some level needed more than its first episodes
    stats = pool.info["levels"]
    assert all(stats[level]["segments"] >= 25 for level in levels)
    assert max(stats[level]["episodes_run"] for level in levels) > 2


# -- requests a pool cannot serve ------------------------------------------------------------
def _config(spec: PoolSpec, tmp_path, **kwargs) -> FidelityConfig:
    trainer = TrainerConfig(epochs=1, net=RewardNetConfig(hidden=(8,), ensemble_size=1))
    return FidelityConfig(env_id=spec.env_id, pool=spec, cache_dir=str(tmp_path),
                          trainer=trainer, workers=1, **kwargs)  # fmt: skip


def test_requests_are_checked_against_every_seeds_split(tmp_path):
    spec = PoolSpec("synthetic-v0", horizon=10, max_episode_steps=10)
    pool = linear_segments(100)  # 20 episodes of 5 segments
    with pytest.raises(RequestError) as caught:
        check_requests(_config(spec, tmp_path, ratings=(500,), methods=("r4",)), pool, range(3))
    err = caught.value
    assert (err.field, err.value) == ("ratings", 500)
    limit = int(re.search(r"ask for at most (\d+)", err.reason).group(1))
    assert 50 <= limit <= 80
    check_requests(_config(spec, tmp_path, ratings=(limit,), methods=("r4",)), pool, range(3))
    # pairs are drawn with replacement: any number of them fits
    check_requests(_config(spec, tmp_path, ratings=(500,), methods=("bt",)), pool, range(3))

    tied = SegmentSet(pool.obs, pool.acts, np.round(pool.true_rewards), pool.episode_id, pool.start)
    with pytest.raises(RequestError) as caught:
        check_requests(_config(spec, tmp_path, ratings=(20,), classes=(60,)), tied, range(2))
    assert caught.value.field == "classes" and "ask for at most" in caught.value.reason

    # two episodes of one segment each: one segment held out, nothing to rank
    two = SegmentSet(pool.obs[:2], pool.acts[:2], pool.true_rewards[:2], np.array([0, 1]),
                     np.zeros(2, int))  # fmt: skip
    with pytest.raises(RequestError) as caught:
        check_requests(_config(spec, tmp_path, ratings=(10,), methods=("bt",)), two, [0])
    assert caught.value.field == "test_fraction"
    assert "holds out 1 segments" in caught.value.reason


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A Pendulum pool of 18 segments (3 levels of 6), built once through ``ratingrl pool``."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATINGRL_CACHE", str(path))
        result = runner.invoke(app, ["pool", *TINY_POOL])
        assert result.exit_code == 0, result.output
        assert "18 segments" in result.output
        yield path


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_bench_fidelity_refuses_more_ratings_than_the_pool_holds_in_one_line(
    tiny_cache, tmp_path, monkeypatch
):
    monkeypatch.setenv("RATINGRL_CACHE", str(tiny_cache))
    out = tmp_path / "fid.json"
    args = ["bench", "fidelity", *TINY_POOL, "--methods", "rbrl", "--seeds", "2", "--epochs", "1",
            "--hidden", "8", "--workers", "1", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--ratings", "100,500"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert line.startswith("error: --ratings 500: the pool of Pendulum-v1 has ")
    assert "--pool-segments N (now 6 a level) for a larger pool" in line
    assert not out.exists()
    limit = int(re.search(r"ask for at most (\d+)", line).group(1))
    assert 10 <= limit < 18

    result = runner.invoke(app, [*args, "--ratings", "10", "--classes", "40"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert line.startswith("error: --classes 40: the training returns of the pool of Pendulum-v1")

    # the limit it names is one the pool serves
    result = runner.invoke(app, [*args, "--ratings", str(limit), "--classes", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {r["ratings"] for r in report["runs"]} == {limit} and len(report["runs"]) == 2

    result = runner.invoke(app, [*args, "--ratings", "10", "--pool-segments", "0"])
    assert result.exit_code == 2
    assert "--pool-segments must be a whole number >= 1, got 0" in _one_line_error(result.output)


@pytest.mark.slow
def test_a_fidelity_sweep_refuses_a_request_its_pool_cannot_serve(tmp_path):
    spec = PoolSpec("synthetic-v0", horizon=10, max_episode_steps=10)
    save_segments(linear_segments(100), pool_path(spec, tmp_path / "cache"), spec=spec.to_dict())
    sweep = tmp_path / "fid.toml"
    sweep.write_text(
        'kind = "fidelity"\nseeds = 1\n[base]\nenv_id = "synthetic-v0"\n'
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "pool = { horizon = 10, max_episode_steps = 10 }\n"
        '[grid]\nmethod = ["r4"]\nratings = [20, 500]\n'
    )
    result = runner.invoke(app, ["sweep", str(sweep), "--store", str(tmp_path / "store"),
                                 "--cpus", "1", "--no-progress"])  # fmt: skip
    assert result.exit_code == 2, result.output
    ours = [line for line in result.output.splitlines() if "Ray" not in line]  # Ray's own notes
    line = _one_line_error("\n".join(ours))
    assert "trial fid/method=r4,ratings=500,seed=0: ratings = 500: the pool of synthetic-v0" in line
    assert "pool.segments_per_level = N" in line
    assert not list((tmp_path / "store").rglob("summary.json"))  # no trial ran
