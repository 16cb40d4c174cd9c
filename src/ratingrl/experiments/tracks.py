"""The policy benchmark's tracks: each a set of environments and overrides of a run's config.

A track is data, not a command line: ``run_config(track, env, method, seed)`` is the
:class:`~ratingrl.rl.config.RunConfig` of one run, every field not overridden at its default.
``benchmarks/policy_sweep.py`` trains them; the tests run every track through
:func:`ratingrl.rl.train.check`, so a typo cannot cost a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ratingrl.rl.config import RunConfig

__all__ = ["Track", "TRACKS", "METHODS", "run_config"]

METHODS = ("oracle", "r4", "rbrl", "multitask", "bt")
"""The methods a track compares; every recovery ratio needs the oracle of the same seed."""

R4_WALKER_BOUNDARIES = (0.0, 30.0, 60.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0)
"""R4's hand-set class boundaries on the return of a 1000-step DMC episode."""

EVIDENCE_EVAL_EPISODES = 10
"""Episodes per evaluation on the evidence tracks: an R4 walker run scored 577 and 362 +- 284
at two 5-episode evaluations of one policy, so five cannot tell methods apart; ten halve the
width of the interval of the mean that every evaluation now reports."""

SMALL_NETS = {"net_arch": (64, 64), "reward_hidden": (64, 64), "reward_epochs": 20}


@dataclass(frozen=True)
class Track:
    """The environments of a track and the config fields its runs change from the defaults.

    ``flat``: the first tracks kept their runs directly under ``runs/<track>/`` (one
    environment each), later ones under ``runs/<track>/<env>/``.
    """

    envs: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    flat: bool = False


def _track(envs: tuple[str, ...], flat: bool = False, **overrides: Any) -> Track:
    return Track(envs, {"mode": "online", **SMALL_NETS, **overrides}, flat)


TRACKS: MappingProxyType[str, Track] = MappingProxyType(
    {
        # PPO: 100k steps; 400 labels, 50 a round every 6k steps (all in by 48k steps).
        "ppo": _track(
            ("dmc/cartpole-balance",),
            flat=True,
            algo="ppo",
            budget=400,
            per_round=50,
            schedule="interval",
            schedule_unit=6000,
            checkpoint_every=25_000,
        ),
        # SAC: 10k steps, 64x64 nets, batch 64; 40 labels, 10 a round every 1k steps.
        "sac": _track(
            ("dmc/cartpole-balance",),
            flat=True,
            total_steps=10_000,
            batch_size=64,
            learning_starts=500,
            buffer_size=100_000,
            budget=40,
            schedule="interval",
            schedule_unit=1000,
            eval_every=2000,
            checkpoint_every=5000,
        ),
        # SAC long enough for the oracle to balance: 30k steps, batch 64; R4's online protocol
        # (100 labels, 10 a round, gaps 1,1,2,3,3,3,4,4,4,5 x unit) squeezed into 30k steps.
        "sac30k": _track(
            ("dmc/cartpole-balance",),
            total_steps=30_000,
            batch_size=64,
            buffer_size=30_000,
            schedule_unit=900,
            eval_every=3000,
        ),
        # RbRL's walker protocol shortened to 300k steps: 1000 labels, 100 a round every 20k
        # steps (all in by 200k), on the two harder DMC tasks, SB3's PPO defaults (64x64). The
        # teacher uses R4's walker boundaries: with 4 equal-width classes over [0, 50] every
        # finger-spin segment of an early policy (returns 0-6) was rated 0.
        "ppo300k": _track(
            ("dmc/finger-spin", "dmc/walker-walk"),
            algo="ppo",
            total_steps=300_000,
            budget=1000,
            per_round=100,
            schedule="interval",
            schedule_unit=20_000,
            rating_boundaries=R4_WALKER_BOUNDARIES,
            eval_every=50_000,
            checkpoint_every=50_000,
        ),
        # R4's online SAC protocol at full length: 300k steps, 100 ratings, 10 a round at R4's
        # growing gaps (unit 9k, so the last round, at 270k, leaves 30k steps to use it), R4's
        # walker boundaries, bt with 100 preferences. 64x64 nets (SB3's batch of 256): 256x256
        # runs at ~57 env steps/s here, 87 min a run; 64x64 at ~150.
        "sac300k": _track(
            ("dmc/walker-walk", "dmc/cheetah-run"),
            total_steps=300_000,
            buffer_size=300_000,
            schedule_unit=9000,
            rating_boundaries=R4_WALKER_BOUNDARIES,
            eval_every=25_000,
            eval_episodes=EVIDENCE_EVAL_EPISODES,
            checkpoint_every=50_000,
        ),
        # RbRL's PPO protocol: 1M steps, 2000 labels collected early -- 200 a round every 30k
        # steps, all in by 300k -- on three DMC tasks. SB3's PPO defaults (64x64). R4's walker
        # boundaries, as on ppo300k: with equal-width classes the teacher used two classes on
        # walker-walk and one on finger-spin (ratings' own tau 0.08-0.17), so no reward learned.
        # 200 gradient steps per reward update: full passes over up to 2,000 labels cost R4 73
        # of ~850 CPU s on cartpole (0.88 of the oracle's speed); 50 steps a round of 50 labels
        # kept recovery on the 100k track and gave 0.96.
        "ppo1m": _track(
            ("dmc/cartpole-balance", "dmc/finger-spin", "dmc/walker-walk"),
            algo="ppo",
            total_steps=1_000_000,
            budget=2000,
            per_round=200,
            schedule="interval",
            schedule_unit=30_000,
            rating_boundaries=R4_WALKER_BOUNDARIES,
            reward_update_steps=200,
            eval_every=100_000,
            eval_episodes=EVIDENCE_EVAL_EPISODES,
            checkpoint_every=100_000,
        ),
    }
)


def run_config(track: str, env: str, method: str, seed: int) -> RunConfig:
    """The configuration of one run of ``track``."""
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; tracks: {sorted(TRACKS)}")
    spec = TRACKS[track]
    if env not in spec.envs:
        raise ValueError(f"track {track!r} runs on {list(spec.envs)}, not on {env!r}")
    return RunConfig().replace(**spec.overrides, env_id=env, method=method, seed=seed)
