"""Environment construction: Gymnasium ids as they are, DeepMind Control as ``dmc/domain-task``.

DeepMind Control tasks come through Shimmy, whose observations are dicts of float64 arrays; we
flatten them so every environment looks the same to the rest of the library (a flat float
vector). This is the only module that knows the naming scheme.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering; set before mujoco is imported

import logging  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium.wrappers import FlattenObservation  # noqa: E402

# MuJoCo prints a deprecation notice for the model files of HalfCheetah, Walker and others
# (their XML uses `settotalmass`) every time an env is built; it is not ours to fix and drowns
# progress output. Route MuJoCo's warnings through Python's `warnings` and drop that one notice.
_KNOWN_UPSTREAM_NOTICES = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    if not any(notice in message for notice in _KNOWN_UPSTREAM_NOTICES):
        warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)


class _DropKnownNotices(logging.Filter):
    """Drops the upstream notices above from a logger; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in _KNOWN_UPSTREAM_NOTICES)


_ABSL_FILTER = _DropKnownNotices()


def _quiet_dm_control_notices() -> None:
    """Drop the same notices once dm_control has taken over MuJoCo's warning callback.

    Importing dm_control (Shimmy's DeepMind Control envs, :func:`dm_control_physics`) replaces
    the callback above with one that logs every MuJoCo warning to the ``absl`` logger, so each
    HalfCheetah built afterwards printed ``WARNING:absl:compiler attribute 'settotalmass' ...``.
    We filter that logger rather than take the callback back, so dm_control's other warnings
    still reach it. Only once absl has created its logger: creating it first would give absl a
    plain ``logging.Logger`` instead of its own class. Adding the same filter twice is a no-op.
    """
    if "absl.logging" in sys.modules:
        logging.getLogger("absl").addFilter(_ABSL_FILTER)

__all__ = [
    "make_env",
    "EnvError",
    "dmc_gym_id",
    "dm_control_physics",
    "has_physics_state",
    "get_physics_state",
    "set_physics_state",
    "PhysicsStateWrapper",
]

DMC_PREFIX = "dmc/"


class EnvError(ValueError):
    """An environment id we cannot build."""


def dmc_gym_id(env_id: str) -> str:
    """``dmc/walker-walk`` -> ``dm_control/walker-walk-v0`` (Shimmy's registered id)."""
    return f"dm_control/{env_id[len(DMC_PREFIX) :]}-v0"


def _make_dmc(env_id: str, render_mode: str | None, **kwargs: object) -> gym.Env:
    import shimmy

    gym.register_envs(shimmy)
    _quiet_dm_control_notices()
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
    _quiet_dm_control_notices()  # dm_control may have been imported by the caller
    if env_id.startswith(DMC_PREFIX):
        return _make_dmc(env_id, render_mode, **kwargs)
    try:
        return gym.make(env_id, render_mode=render_mode, **kwargs)
    except gym.error.Error as err:
        raise EnvError(f"unknown environment {env_id!r}: {err}") from err


def dm_control_physics(env: gym.Env) -> object | None:
    """The dm_control ``Physics`` behind a Shimmy env (through any wrappers), else None.

    Shimmy's ``DmControlCompatibilityV0`` keeps the dm_control environment in ``_env``; we test
    the type rather than ``hasattr`` because that class forwards unknown attributes to dm_control.
    """
    try:
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0
    except ImportError:  # shimmy (or dm_control) not installed: no DeepMind Control envs
        return None
    _quiet_dm_control_notices()
    unwrapped = env.unwrapped
    if isinstance(unwrapped, DmControlCompatibilityV0):
        return unwrapped._env.physics
    return None


def _mujoco_env(env: gym.Env) -> gym.Env:
    unwrapped = env.unwrapped
    if not (hasattr(unwrapped, "data") and hasattr(unwrapped, "set_state")):
        raise EnvError(
            f"{type(unwrapped).__name__} has no MuJoCo simulator state "
            "(neither a Gymnasium MuJoCo env nor a DeepMind Control task)"
        )
    return unwrapped


def has_physics_state(env: gym.Env) -> bool:
    """Whether :func:`get_physics_state` works on ``env`` (MuJoCo-based: Gymnasium or DMC)."""
    unwrapped = env.unwrapped
    gym_mujoco = hasattr(unwrapped, "data") and hasattr(unwrapped, "set_state")
    return dm_control_physics(env) is not None or gym_mujoco


def get_physics_state(env: gym.Env) -> np.ndarray:
    """The simulator state (float64) that, set back, reproduces the current observation.

    dm_control: ``physics.get_state()`` (qpos, qvel, act); Gymnasium MuJoCo: qpos then qvel.
    Stored with segments so clips of tasks whose observations do not determine the state
    (DeepMind Control) can still show the robot.
    """
    physics = dm_control_physics(env)
    if physics is not None:
        return np.array(physics.get_state(), dtype=np.float64)
    data = _mujoco_env(env).data
    return np.concatenate([data.qpos, data.qvel]).astype(np.float64)


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    """Put ``env``'s simulator in ``state`` (from :func:`get_physics_state`), derived quantities
    (positions of bodies, sensors) recomputed, so the env can be rendered or observed at once.
    """
    state = np.asarray(state, dtype=np.float64)
    physics = dm_control_physics(env)
    if physics is not None:
        expected = physics.get_state().shape
        if state.shape != expected:
            raise EnvError(f"state has shape {state.shape}, this env's physics needs {expected}")
        with physics.reset_context():  # runs mj_forward on exit
            physics.set_state(state)
        return
    unwrapped = _mujoco_env(env)
    nq, nv = int(unwrapped.model.nq), int(unwrapped.model.nv)
    if state.shape != (nq + nv,):
        raise EnvError(f"state has shape {state.shape}, this env needs ({nq + nv},) = nq + nv")
    unwrapped.set_state(state[:nq], state[nq:])  # Gymnasium runs mj_forward here


class PhysicsStateWrapper(gym.Wrapper):
    """Give an env a ``physics_state()`` method: :func:`get_physics_state` of the env it wraps.

    A free function cannot be called inside a vector env's workers, a method can: with this
    wrapper on each sub-env, ``venv.env_method("physics_state")`` reads every sub-env's simulator
    state through SB3's public API, in-process (``DummyVecEnv``) or not (``SubprocVecEnv``).
    Steps and resets pass through untouched, so wrapping costs nothing until the method is called.
    """

    def physics_state(self) -> np.ndarray:
        return get_physics_state(self.env)
