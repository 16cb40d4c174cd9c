"""Simulator states carried with segments: storage, rollouts, online queries (when the rating
source wants them) and clips that show the robot."""

from __future__ import annotations

import numpy as np
import pytest

from ratingrl.feedback.envs import make_env, set_physics_state
from ratingrl.feedback.io import (
    load_preferences,
    load_rated,
    load_segments,
    save_preferences,
    save_segments,
)
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.segments import FeedbackError, PreferencePairs, SegmentSet
from ratingrl.feedback.sources import RatingSource, TeacherSource
from ratingrl.rl.builders import make_teacher_source
from ratingrl.rl.checkpoint import find_checkpoint, load_state
from ratingrl.rl.state import RunState
from ratingrl.rl.train import train


def _segments(n: int = 3, h: int = 4, with_states: bool = True) -> SegmentSet:
    rng = np.random.default_rng(0)
    return SegmentSet(
        rng.normal(size=(n, h, 5)),
        rng.normal(size=(n, h, 2)),
        rng.normal(size=(n, h)),
        np.arange(n),
        np.zeros(n),
        states=rng.normal(size=(n, h, 7)) + 1e-9 if with_states else None,  # float64 digits
    )


def test_states_round_trip_through_parquet_in_float64(tmp_path):
    segments = _segments()
    save_segments(segments, tmp_path / "pool.parquet")
    loaded, _ = load_segments(tmp_path / "pool.parquet")
    assert loaded.states.dtype == np.float64 and loaded.state_dim == 7
    np.testing.assert_array_equal(loaded.states, segments.states)
    np.testing.assert_array_equal(loaded.subset([2, 0]).states, segments.states[[2, 0]])


def test_files_without_states_still_load(tmp_path):
    save_segments(_segments(with_states=False), tmp_path / "old.parquet")
    loaded, _ = load_segments(tmp_path / "old.parquet")
    assert loaded.states is None and loaded.state_dim is None


def test_preferences_keep_states_of_either_side(tmp_path):
    pairs = PreferencePairs(_segments(with_states=False), _segments(), np.array([0.0, 0.5, 1.0]))
    save_preferences(pairs, tmp_path / "prefs.parquet")
    loaded = load_preferences(tmp_path / "prefs.parquet")
    assert loaded.first.states is None
    np.testing.assert_array_equal(loaded.second.states, pairs.second.states)


def test_bad_states_are_named():
    good = _segments()
    with pytest.raises(FeedbackError, match="states has shape"):
        SegmentSet(good.obs, good.acts, states=np.zeros((3, 5, 7)))
    bad = good.states.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(
        FeedbackError, match=r"states holds a non-finite value nan at index \(1, 2, 3\)"
    ):
        SegmentSet(good.obs, good.acts, states=bad)


def _rollout(env_id: str, steps: int = 12):
    env = make_env(env_id)
    space = env.action_space
    env.close()
    policy = random_policy(space.low, space.high, np.random.default_rng(0))
    episodes = collect_episodes(
        env_id, policy, 1, seed=3, n_envs=1, max_steps=steps, record_states=True
    )
    return episodes[0]


@pytest.mark.parametrize("env_id", ["dmc/cartpole-balance", "HalfCheetah-v5"])
def test_recorded_states_reproduce_the_observations(env_id):
    import gymnasium as gym

    episode = _rollout(env_id)
    assert episode.states.shape[0] == len(episode.obs) == episode.length
    env = make_env(env_id)
    env.reset(seed=99)  # a different start: only the set state can make the observations match
    try:
        for t in range(episode.length):
            set_physics_state(env, episode.states[t])
            unwrapped = env.unwrapped
            if env_id.startswith("dmc/"):
                physics = unwrapped._env.physics
                raw = unwrapped._env.task.get_observation(physics)
                obs = gym.spaces.flatten(unwrapped.observation_space, raw)
            else:
                obs = unwrapped._get_obs()
            np.testing.assert_allclose(obs, episode.obs[t], rtol=1e-5, atol=1e-5, err_msg=f"t={t}")
    finally:
        env.close()
    segments = segment_episodes([episode], horizon=4, stride=4)
    np.testing.assert_array_equal(segments.states[1], episode.states[4:8])


class StateHungrySource(RatingSource):
    """A simulated teacher that asks for states (as the app does) and keeps every query."""

    wants_states = True

    def __init__(self, inner: TeacherSource) -> None:
        self.inner = inner
        self.queries: list[SegmentSet] = []

    @property
    def scale(self):
        return self.inner.scale

    def request(self, queries: SegmentSet) -> None:
        self.queries.append(queries)
        self.inner.request(queries)

    def collect(self, timeout: float = 0.0):
        return self.inner.collect(timeout)


def _recorded_episodes(run):
    """The training episodes the run's last checkpoint kept (the query candidates)."""
    episodes = RunState.from_dict(load_state(find_checkpoint(run))).recorder["episodes"]
    assert episodes, "the run recorded no finished episode"
    return episodes


def test_the_simulated_teacher_costs_no_state_recording(tmp_path, dmc_online_config):
    run = tmp_path / "run"
    train(dmc_online_config, run, progress=False)
    assert all(ep.states is None for ep in _recorded_episodes(run))
    assert load_rated(run / "feedback.parquet").segments.states is None


def test_online_queries_carry_states_when_the_source_wants_them(
    tmp_path, dmc_online_config, observation_in
):
    """Every query's states reproduce its observations, also right after SB3's autoresets."""
    run = tmp_path / "run"
    spy = StateHungrySource(make_teacher_source(dmc_online_config))
    train(dmc_online_config, run, source=spy, progress=False)
    assert all(ep.states is not None for ep in _recorded_episodes(run))  # checkpoints keep them
    (queries,) = spy.queries
    assert queries.states is not None and queries.states.shape == (6, 20, 4)
    assert (queries.episode_id >= 1).all() and (queries.start == 0).all()  # after autoresets
    env = make_env("dmc/cartpole-balance")
    env.reset(seed=99)  # a different start: only the set state can reproduce the observations
    try:
        for i in range(len(queries)):
            for t in range(queries.horizon):
                np.testing.assert_allclose(
                    observation_in(env, queries.states[i, t]),
                    queries.obs[i, t],
                    atol=1e-5,
                    err_msg=f"query {i}, step {t}",
                )
    finally:
        env.close()
    rated = load_rated(run / "feedback.parquet").segments  # the run's dataset keeps them too
    np.testing.assert_array_equal(rated.states, queries.states)


def test_set_state_names_the_expected_shape():
    from ratingrl.feedback.envs import EnvError

    env = make_env("dmc/cartpole-balance")
    env.reset(seed=0)
    try:
        with pytest.raises(EnvError, match=r"state has shape \(3,\)"):
            set_physics_state(env, np.zeros(3))
    finally:
        env.close()


def test_dmc_clip_from_states_shows_the_robot_moving(tmp_path, decode_mp4):
    from ratingrl.app.render import ClipRenderer, ClipSpec, bar_frames

    episode = _rollout("dmc/cartpole-balance", steps=10)
    spec = ClipSpec(
        "b" * 32,
        "dmc/cartpole-balance",
        episode.obs,
        episode.acts,
        states=episode.states,
        width=64,
        height=48,
        fps=10,
    )
    renderer = ClipRenderer()
    try:
        frames = renderer.frames(spec)
        mp4 = renderer.mp4(spec)
        fallback = renderer.frames(
            ClipSpec("b" * 32, spec.env_id, spec.obs, spec.acts, width=64, height=48)
        )
    finally:
        renderer.close()
    assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 5 and not np.array_equal(frames[0], frames[-1])
    np.testing.assert_array_equal(fallback, bar_frames(episode.obs, episode.acts, 64, 48))
    assert np.abs(frames.astype(int) - fallback.astype(int)).mean() > 20
    assert mp4[4:8] == b"ftyp"
    decoded = decode_mp4(mp4, tmp_path)
    assert decoded.shape[0] == 10 and not np.array_equal(decoded[0], decoded[-1])


def test_add_segments_carries_pool_states_into_the_app(tmp_path, decode_mp4):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from ratingrl.app import store
    from ratingrl.app.db import SegmentRow, bytes_to_array, make_engine, make_sessionmaker
    from ratingrl.app.server import create_app
    from ratingrl.cli.app import app_cli
    from ratingrl.feedback.io import load_rated

    episode = _rollout("dmc/cartpole-balance", steps=30)
    pool = segment_episodes([episode], horizon=15, stride=15)  # clips keep the first 12 steps
    save_segments(pool, tmp_path / "pool.parquet")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    created = runner.invoke(
        app_cli,
        ["create-project", "--name", "cp", "--env", "dmc/cartpole-balance"]
        + ["--clip-length", "12", "--size", "48", "--db", db],
    )
    assert created.exit_code == 0, created.output
    added = runner.invoke(
        app_cli, ["add-segments", "--from", str(tmp_path / "pool.parquet")] + ["--db", db]
    )
    assert added.exit_code == 0, added.output
    token = runner.invoke(app_cli, ["add-rater", "ann", "--db", db]).stdout.splitlines()[0]

    with make_sessionmaker(make_engine(db))() as session:
        rows = session.query(SegmentRow).order_by(SegmentRow.id).all()
        stored = np.stack([bytes_to_array(r.states) for r in rows])
        np.testing.assert_array_equal(stored, pool.states[:, :12])
        again = store.segments_by_id(session, [r.id for r in rows])
        np.testing.assert_array_equal(again.states, pool.states[:, :12])

    h = {"Authorization": f"Bearer {token}"}
    # ``with``: the app's shutdown closes the renderer, freeing the GL context on its own thread
    with TestClient(create_app(db, tmp_path / "clips", "operator-token")) as client:
        clip = client.get("/api/next", headers=h).json()
        video = client.get(clip["video_url"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        frames = decode_mp4(video.content, tmp_path)
        assert frames.std() > 5 and not np.array_equal(frames[0], frames[-1])
        client.post("/api/ratings", json={"clip_id": clip["clip_id"], "rating": 1}, headers=h)
    assert (
        runner.invoke(
            app_cli, ["export", "--out", str(tmp_path / "x.parquet"), "--db", db]
        ).exit_code
        == 0
    )
    assert load_rated(tmp_path / "x.parquet").segments.state_dim == pool.state_dim


@pytest.mark.parametrize(
    ("env_id", "has_states"), [("dmc/cartpole-balance", True), ("Pendulum-v1", False)]
)
def test_build_pool_keeps_states_where_the_env_has_them(env_id, has_states):
    from ratingrl.feedback.pool import PoolSpec
    from ratingrl.rl.behaviour import build_pool

    spec = PoolSpec(
        env_id,
        horizon=5,
        stride=5,
        train_steps=(0,),
        action_noise=(0.0,),
        episodes_per_policy=1,
        max_episode_steps=10,
    )
    pool = build_pool(spec, progress=False)
    assert (pool.states is not None) == has_states
    if has_states:
        assert pool.states.shape[:2] == pool.obs.shape[:2]
