"""Shared fixtures: synthetic segments with a known reward, the tiny online run every training
test starts from, a small rated Pendulum dataset, fake feedback sources (a person who answers
later and takes ratings back, a source that dies mid-run, a spy on the reward updater), and the
rating app's database on both backends (``db_url``: SQLite, and PostgreSQL when the test run has
a server, see :func:`postgres_server`). The browser tests live in ``tests/browser/`` with their
own fixtures (the app served, chromium, page polling).

Test modules import neither this file nor each other: everything they share is a fixture here
(a fixture may hand out a class or a function), so each module runs on its own and
``--import-mode=importlib`` needs no package layout.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from ratingrl.feedback.segments import RatedSegments, RatingScale, SegmentSet
from ratingrl.feedback.sources import FeedbackSource, RatingSource
from ratingrl.feedback.synthetic import linear_segments

if TYPE_CHECKING:
    from ratingrl.rl.config import RunConfig

# Tiny nets run fastest on one thread, and two threads fight any other process on a 2-core box.
torch.set_num_threads(1)


@pytest.fixture
def segments() -> SegmentSet:
    return linear_segments(400)


@pytest.fixture(name="linear_segments")
def linear_segments_fixture() -> Callable[..., SegmentSet]:
    """:func:`ratingrl.feedback.synthetic.linear_segments`, for other sizes or seeds."""
    return linear_segments


def random_segments(n: int, h: int = 5, seed: int = 0) -> SegmentSet:
    """``n`` segments of ``h`` steps (3-d observations, 1-d actions), true rewards in [-1, 0]."""
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(-1, 0, size=(n, h)).astype(np.float32)
    return SegmentSet(rng.normal(size=(n, h, 3)), rng.normal(size=(n, h, 1)), rewards)


@pytest.fixture(name="random_segments")
def random_segments_fixture() -> Callable[..., SegmentSet]:
    """:func:`random_segments`: ``random_segments(n, h=5, seed=0)``."""
    return random_segments


def make_rated(ratings: Sequence[int], ids: Sequence[str] | None = None, seed: int = 0):
    """Ratings on a 3-level scale (the :class:`Person`'s) of :func:`random_segments`, with
    ``label_id`` ``ids`` (None: a teacher's ratings, which have no ids)."""
    segs = random_segments(len(ratings), seed=seed)
    return RatedSegments(segs, np.array(ratings), RatingScale(3), {}, None, ids)


@pytest.fixture(name="make_rated")
def make_rated_fixture() -> Callable[..., RatedSegments]:
    """:func:`make_rated`: ``make_rated([0, 2, 1], ["a", "b", "c"], seed=0)``."""
    return make_rated


# -- the tiny online run -------------------------------------------------------------------------
def tiny_run() -> RunConfig:
    """Online SAC on Pendulum with tiny nets: two rounds of 10 ratings (steps 250 and 500) in
    600 steps, a few seconds. Tests derive their runs from it with ``replace``.

    (A function, so this file imports no training code: a broken ``ratingrl.rl`` then fails the
    tests that train, not every test of the suite.)
    """
    from ratingrl.rl.config import RunConfig

    return RunConfig(
        env_id="Pendulum-v1",
        algo="sac",
        method="rbrl",
        mode="online",
        total_steps=600,
        max_episode_steps=100,
        net_arch=(32, 32),
        batch_size=32,
        learning_starts=100,
        buffer_size=400,  # smaller than the run: relabelling after wrap-around is exercised
        n_steps=128,
        reward_hidden=(32, 32),
        reward_epochs=5,
        budget=20,
        per_round=10,
        schedule="interval",
        schedule_unit=250,
        horizon=20,
        candidate_episodes=5,
        rating_range=(-320.0, 0.0),
        eval_every=300,
        eval_episodes=2,
        checkpoint_every=100,
    )


@pytest.fixture
def tiny_config() -> RunConfig:
    """:func:`tiny_run`: the tiny online run (SAC, rbrl, 20 ratings in two rounds)."""
    return tiny_run()


@pytest.fixture
def dmc_online_config(tiny_config: RunConfig) -> RunConfig:
    """Online SAC on cartpole: 20-step episodes, one 20-step window each (so every query starts
    an episode, and every episode but the first starts right after SB3's same-step autoreset);
    one round of 6 ratings."""
    return replace(
        tiny_config,
        env_id="dmc/cartpole-balance",
        rating_range=None,
        total_steps=300,
        max_episode_steps=20,
        horizon=20,
        candidate_episodes=8,
        budget=6,
        per_round=6,
        eval_episodes=1,
    )


@pytest.fixture(scope="session")
def pendulum_rated(tmp_path_factory) -> Path:
    """A rated Pendulum dataset (3 quantile classes, random policy) for offline runs."""
    from ratingrl.feedback.io import save_rated
    from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
    from ratingrl.feedback.teachers import Bins, RatingTeacher

    rng = np.random.default_rng(0)
    env_low, env_high = np.array([-2.0]), np.array([2.0])
    eps = collect_episodes("Pendulum-v1", random_policy(env_low, env_high, rng), 6, 0, max_steps=60)
    segs = segment_episodes(eps, 20, 10)
    data = RatingTeacher(Bins.quantile(3, segs.true_returns)).rate_dataset(segs, rng)
    path = tmp_path_factory.mktemp("data") / "rated.parquet"
    save_rated(replace(data, source={**data.source, "env_id": "Pendulum-v1"}), path)
    return path


# -- fake feedback sources -----------------------------------------------------------------------
class Person(RatingSource):
    """A rating source whose answers and withdrawals the test decides: ``answers`` are handed
    out one per :meth:`collect`, ``withdrawn`` ids at the next :meth:`retracted`."""

    def __init__(self, answers: Sequence[RatedSegments] = (), withdrawn: Sequence[str] = ()):
        self.answers, self.withdrawn = list(answers), list(withdrawn)
        self.requested: list[SegmentSet] = []

    @property
    def scale(self) -> RatingScale:
        return RatingScale(3)

    def request(self, queries: SegmentSet) -> None:
        self.requested.append(queries)

    def collect(self, timeout: float = 0.0) -> RatedSegments | None:
        return self.answers.pop(0) if self.answers else None

    def retracted(self) -> list[str]:
        out, self.withdrawn = self.withdrawn, []
        return out


@pytest.fixture
def person() -> Person:
    """A fresh :class:`Person`: nothing answered, nothing withdrawn."""
    return Person()


class SourceCrash(RuntimeError):
    """Stands in for the process dying while a source works."""


def crashing(base: type[FeedbackSource], at_round: int, when: str = "request") -> type:
    """``base`` made to die in feedback round ``at_round``: at that round's ``request``
    (nothing of the round is answered), or at the first ``collect`` after it (the round's
    queries were asked, their answers never arrive). Raises :class:`SourceCrash`."""
    if when not in ("request", "collect"):
        raise ValueError(f"when must be 'request' or 'collect', got {when!r}")

    class Crashing(base):  # type: ignore[misc, valid-type]
        requests = 0

        def request(self, queries) -> None:
            self.requests += 1
            if when == "request" and self.requests == at_round:
                raise SourceCrash(f"stopped in round {at_round} (request)")
            super().request(queries)

        def collect(self, timeout: float = 0.0):
            if when == "collect" and self.requests == at_round:
                raise SourceCrash(f"stopped in round {at_round} (collect)")
            return super().collect(timeout)

    Crashing.__name__ = f"Crashing{base.__name__}"
    return Crashing


@pytest.fixture(name="crashing")
def crashing_fixture() -> Callable[..., type]:
    """:func:`crashing`: ``crashing(TeacherSource, at_round=2)(teacher, rng)`` dies in round 2
    with a ``RuntimeError`` whose message starts ``stopped in round 2``."""
    return crashing


class SpyUpdater:
    """A reward updater that records what each update learned from, then delegates.

    ``calls[i]`` is ``(labels of each channel, warm-started)`` of update ``i``, recorded as the
    update starts (also when it then fails); ``models`` holds the models the updates returned.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[list, bool]] = []
        self.models: list = []

    def __call__(self, labels, model):
        self.calls.append((list(labels), model is not None))
        model, row = self.inner(labels, model)
        self.models.append(model)
        return model, row


@pytest.fixture
def spy_updater() -> Callable[[RunConfig], SpyUpdater]:
    """``spy_updater(config)``: the run's own updater (``make_updater``) under a
    :class:`SpyUpdater`, to pass as ``Run.create(config, dir, updater=...)``."""
    from ratingrl.rl.builders import make_updater

    return lambda config: SpyUpdater(make_updater(config))


# -- simulators and clips ------------------------------------------------------------------------
def observation_in(env, state: np.ndarray) -> np.ndarray:
    """The observation ``env`` (DMC or Gymnasium MuJoCo) gives in simulator state ``state``."""
    import gymnasium as gym

    from ratingrl.feedback.envs import dm_control_physics, set_physics_state

    set_physics_state(env, state)
    unwrapped = env.unwrapped
    if dm_control_physics(env) is None:
        return unwrapped._get_obs()
    raw = unwrapped._env.task.get_observation(unwrapped._env.physics)
    return gym.spaces.flatten(unwrapped.observation_space, raw)


@pytest.fixture(name="observation_in")
def observation_in_fixture() -> Callable[..., np.ndarray]:
    """:func:`observation_in`: set a simulator state, read the observation it gives."""
    return observation_in


def decode_mp4(mp4: bytes, folder: Path) -> np.ndarray:
    """Frames of an MP4, decoded by ffmpeg: proof the bytes are a playable video."""
    import imageio_ffmpeg

    path = Path(folder) / "clip.mp4"
    path.write_bytes(mp4)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


@pytest.fixture(name="decode_mp4")
def decode_mp4_fixture() -> Callable[[bytes, Path], np.ndarray]:
    """:func:`decode_mp4`: ``decode_mp4(mp4_bytes, tmp_path)`` -> frames ``[T, H, W, 3]``."""
    return decode_mp4


# -- reward-method plugins -----------------------------------------------------------------------
@pytest.fixture
def isolated_registry():
    """The test may register reward methods and load plugins; afterwards the registry is as it
    was (built-ins included) and plugin modules are forgotten, so a later test loading the same
    file registers its methods again."""
    import sys

    from ratingrl.rewards.methods import method_class, register, registered_methods, unregister

    before, modules = registered_methods(), set(sys.modules)
    yield
    for name in set(registered_methods()) - set(before):
        unregister(name)
    for name, cls in before.items():
        if method_class(name) is not cls:
            register(name, replace=True)(cls)
    for name in set(sys.modules) - modules:
        if name.startswith("_ratingrl_plugin_"):
            del sys.modules[name]


# -- the rating app's database, on SQLite and on PostgreSQL --------------------------------------
POSTGRES_ENV = "RATINGRL_TEST_POSTGRES"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "postgres: runs on the test run's PostgreSQL server")


@pytest.fixture(scope="session")
def postgres_server():
    """An autocommit engine on this test run's PostgreSQL server (``$RATINGRL_TEST_POSTGRES``).

    ``make test`` starts a throwaway server and sets it (``scripts/with_postgres.sh``). Without
    it the PostgreSQL copies of the tests are skipped -- except in CI (``CI=true``), where they
    must run, so a missing server is an error. A server that is set but does not answer is
    always an error.
    """
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = (
            f"no PostgreSQL server for this test run: set ${POSTGRES_ENV} to a "
            "postgresql+psycopg:// URL (make test starts one with scripts/with_postgres.sh)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI runs every test on PostgreSQL too", pytrace=False)
        pytest.skip(message)
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except Exception as err:  # whatever the reason, the server the run was given is unusable
        pytest.fail(f"${POSTGRES_ENV} is set but PostgreSQL does not answer: {err}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request) -> str:
    """``"sqlite"`` or ``"postgresql"``: a test taking it (or ``db_url``) runs on both."""
    return request.param


@pytest.fixture
def make_db_url(db_backend: str, tmp_path: Path, request) -> Iterator[Callable[[], str]]:
    """``make_db_url()`` -> the URL of a new, empty database on the test's backend: a file in
    ``tmp_path`` (``ratings.db``, then ``ratings-2.db``...), or a database of its own on the
    PostgreSQL server (created now, dropped after the test, connections and all)."""
    admin = request.getfixturevalue("postgres_server") if db_backend == "postgresql" else None
    made: list[str] = []

    def make() -> str:
        made.append(f"ratingrl_test_{secrets.token_hex(8)}")
        if admin is None:
            suffix = f"-{len(made)}" if len(made) > 1 else ""
            return f"sqlite:///{tmp_path / f'ratings{suffix}.db'}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{made[-1]}"')
        return admin.url.set(database=made[-1]).render_as_string(hide_password=False)

    yield make
    for name in made if admin is not None else ():
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(make_db_url: Callable[[], str]) -> str:
    """A new, empty rating database: SQLite in ``tmp_path``, and (a second copy of the test)
    PostgreSQL. Tests read what is stored with :func:`run_sql`, not a driver of one backend."""
    return make_db_url()


def run_sql(url: str, statement: str, **params) -> list[tuple]:
    """Run ``statement`` (``:name`` placeholders filled from ``params``) on the database at
    ``url`` through a connection of its own, in a transaction of its own that is committed:
    what another process would see or do. Returns the rows as tuples ([] when there are none)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(name="run_sql")
def run_sql_fixture() -> Callable[..., list[tuple]]:
    """:func:`run_sql`: ``run_sql(db_url, "SELECT status FROM ratings ORDER BY id")``."""
    return run_sql


@pytest.fixture
def rate_small_project() -> Callable[..., None]:
    """``rate_small_project(session, name, values)``: through the store of today, a project
    ``name`` (the demo's environment and scale, 10-step clips) of 3 synthetic clips, and a rater
    ``ann`` giving ``values`` to the clips her queue shows, in order. Not committed: the caller
    owns the session. Migration tests fill an older schema's tables with it."""
    from ratingrl.app import store
    from ratingrl.app.demo import DemoSpec, synthetic_segments

    def rate(session, name: str, values: Sequence[int]) -> None:
        spec = DemoSpec()
        config = store.ProjectConfig(name, spec.env_id, spec.scale, clip_length=10)
        project = store.create_project(session, config)
        store.add_segments(session, project, synthetic_segments(3, 10, 4, 2, seed=0))
        rater = store.rater_for_token(session, store.add_rater(session, project, "ann"))
        for value in values:
            store.submit(session, rater, store.next_item(session, rater).public_id, value)

    return rate
