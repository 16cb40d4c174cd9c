"""Which library trains the policy: Stable-Baselines3 (PyTorch, the default) or SBX (JAX).

SBX is SB3's JAX twin: its SAC and PPO subclass SB3's base classes and keep SB3's replay and
rollout buffers, callbacks, logger, ``save``/``load`` and ``predict``. So the learned-reward
wrapper, whole-buffer relabelling, PPO rollout scoring, the online loop, evaluation and
checkpoints work on either through the same code. The networks and the gradient steps run
under XLA (SAC's critic, actor and temperature updates are one compiled function), which is
where SBX saves CPU time; the hyper-parameters passed are the same for both.

Two things differ and are handled here: SBX is an optional extra (``pip install
'ratingrl[jax]'``), imported only when a run asks for it; and SBX draws its noise from a JAX key
kept in the model (``algo.key``), which SB3's ``load`` resets from the seed, so
:func:`algorithm_rng_state` carries it through a checkpoint.

JAX reads its thread settings when it is first imported: ``ratingrl train --threads 1`` sets
``XLA_FLAGS`` to one thread before that (:func:`single_thread_xla_flags`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ratingrl.rl.validation import BACKENDS, RunError

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from ratingrl.rl.config import RunConfig

__all__ = [
    "BACKENDS",
    "backend_available",
    "algorithm_class",
    "make_algorithm",
    "load_algorithm",
    "algorithm_rng_state",
    "set_algorithm_rng_state",
    "single_thread_xla_flags",
]

XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
"""XLA's CPU flags for one compute thread (what one-thread CPU-time measurements need)."""


def backend_available(name: str) -> bool:
    """Whether backend ``name``'s library is installed (SBX is the optional ``[jax]`` extra)."""
    if name == "sb3":
        return True
    return name == "sbx" and importlib.util.find_spec("sbx") is not None


def algorithm_class(backend: str, algo: str) -> type[BaseAlgorithm]:
    """SB3's or SBX's ``SAC`` / ``PPO`` class."""
    if backend not in BACKENDS:
        raise RunError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "sbx":
        if not backend_available("sbx"):
            raise RunError("backend 'sbx' needs SBX and JAX: pip install 'ratingrl[jax]'")
        import sbx as library
    else:
        import stable_baselines3 as library
    return library.SAC if algo == "sac" else library.PPO


def make_algorithm(config: RunConfig, env) -> BaseAlgorithm:
    """A new SAC or PPO of the run's backend with the run's networks and seed (on the CPU:
    the nets are small). Both backends get the same hyper-parameters."""
    cls = algorithm_class(config.backend, config.algo)
    policy_kwargs = {"net_arch": list(config.net_arch)}
    common = {"seed": config.seed, "device": "cpu", "verbose": 0, "policy_kwargs": policy_kwargs}
    if config.algo == "sac":
        return cls(
            "MlpPolicy",
            env,
            batch_size=config.batch_size,
            learning_starts=config.learning_starts,
            buffer_size=config.buffer_size,
            **common,
        )
    return cls("MlpPolicy", env, n_steps=config.n_steps, **common)


def load_algorithm(config: RunConfig, checkpoint: Path, env) -> BaseAlgorithm:
    """The algorithm saved in ``checkpoint``, on ``env`` (reset before training continues),
    with SAC's replay buffer. The random state of an SBX model is put back by
    :func:`set_algorithm_rng_state` (``load`` reseeds it)."""
    cls = algorithm_class(config.backend, config.algo)
    algo = cls.load(checkpoint / "policy.zip", env=env, device="cpu", force_reset=True)
    if (checkpoint / "replay_buffer.pkl").exists():
        algo.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    return algo


def algorithm_rng_state(algo: BaseAlgorithm) -> dict | None:
    """The model's own random state (SBX's JAX key), or None when it has none (SB3 draws from
    the global torch and NumPy streams that :func:`~ratingrl.rl.checkpoint.rng_state` saves)."""
    key = getattr(algo, "key", None)
    if key is None or not _is_jax(algo):
        return None
    return {"jax_key": np.asarray(key).copy()}


def set_algorithm_rng_state(algo: BaseAlgorithm, state: dict | None) -> None:
    """Put back what :func:`algorithm_rng_state` saved (nothing to do for None)."""
    if state is None or "jax_key" not in state or not _is_jax(algo):
        return
    import jax.numpy as jnp

    algo.key = jnp.asarray(state["jax_key"])


def _is_jax(algo: BaseAlgorithm) -> bool:
    return type(algo).__module__.startswith("sbx.")


def single_thread_xla_flags(flags: str | None) -> str:
    """``XLA_FLAGS`` with XLA's CPU work on one thread (existing thread flags win)."""
    flags = (flags or "").strip()
    if "multi_thread_eigen" in flags or "intra_op_parallelism_threads" in flags:
        return flags
    return f"{flags} {XLA_ONE_THREAD}".strip()
