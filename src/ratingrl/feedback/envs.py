"""Environment construction: Gymnasium ids as they are, DeepMind Control as ``dmc/domain-task``.

DeepMind Control tasks come through Shimmy, whose observations are dicts of float64 arrays; we
flatten them so every environment looks the same to the rest of the library (a flat float
vector). This is the only module that knows the naming scheme.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering; set before mujoco is imported

import gymnasium as gym  # noqa: E402
from gymnasium.wrappers import FlattenObservation  # noqa: E402

__all__ = ["make_env", "EnvError", "dmc_gym_id"]

DMC_PREFIX = "dmc/"


class EnvError(ValueError):
    """An environment id we cannot build."""


def dmc_gym_id(env_id: str) -> str:
    """``dmc/walker-walk`` -> ``dm_control/walker-walk-v0`` (Shimmy's registered id)."""
    return f"dm_control/{env_id[len(DMC_PREFIX) :]}-v0"


def _make_dmc(env_id: str, render_mode: str | None, **kwargs: object) -> gym.Env:
    import shimmy

    gym.register_envs(shimmy)
    gym_id = dmc_gym_id(env_id)
    if gym_id not in gym.registry:
        known = sorted(
            DMC_PREFIX + k[len("dm_control/") : -3]
            for k in gym.registry
            if k.startswith("dm_control/") and k.endswith("-v0") and "compatibility" not in k
        )
        raise EnvError(f"unknown environment {env_id!r}; DeepMind Control tasks: {known}")
    env = gym.make(gym_id, render_mode=render_mode, **kwargs)
    return FlattenObservation(env)


def make_env(env_id: str, render_mode: str | None = None, **kwargs: object) -> gym.Env:
    """Build ``env_id``: ``dmc/domain-task`` for DeepMind Control, any Gymnasium id otherwise.

    Raises :class:`EnvError` naming the id when it is not known.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env must be a non-empty string, got {env_id!r}")
    if env_id.startswith(DMC_PREFIX):
        return _make_dmc(env_id, render_mode, **kwargs)
    try:
        return gym.make(env_id, render_mode=render_mode, **kwargs)
    except gym.error.Error as err:
        raise EnvError(f"unknown environment {env_id!r}: {err}") from err
