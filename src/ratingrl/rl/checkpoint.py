"""Checkpoints a run can resume from after any stop, ``kill -9`` included.

A checkpoint is a folder (policy, replay buffer, reward model, loop state with RNG states)
written under a temporary name and swapped in by renames: ``checkpoint`` is always a complete
checkpoint, or -- for the instant between two renames -- ``checkpoint.old`` is. Labels are not
here: they are written to ``feedback.parquet`` the moment they arrive, so a checkpoint older
than the last label loses no label (the resumed run retrains on all of them).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from ratingrl.feedback.io import atomic_write_bytes

__all__ = [
    "CHECKPOINT",
    "save_checkpoint",
    "find_checkpoint",
    "load_state",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT = "checkpoint"


def rng_state() -> dict:
    """The global RNG states SB3 draws from (torch for actions, NumPy for buffer sampling)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(run_dir: Path, algo: BaseAlgorithm, state: dict, reward_model=None) -> Path:
    """Write policy, replay buffer, reward model and ``state`` (picklable) as one checkpoint."""
    run_dir = Path(run_dir)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".checkpoint-"))
    try:
        algo.save(tmp / "policy.zip")
        if isinstance(algo, OffPolicyAlgorithm) and algo.replay_buffer is not None:
            algo.save_replay_buffer(tmp / "replay_buffer.pkl")
        if reward_model is not None:
            reward_model.save(tmp / "reward_model.pt")
        atomic_write_bytes(tmp / "state.pkl", pickle.dumps(state))
        _fsync_dir(tmp)
        final, old = run_dir / CHECKPOINT, run_dir / f"{CHECKPOINT}.old"
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(run_dir)
        shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint of ``run_dir`` (``checkpoint``, else ``checkpoint.old``)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = Path(run_dir) / name
        if (path / "state.pkl").exists() and (path / "policy.zip").exists():
            return path
    return None


def load_state(checkpoint: Path) -> dict:
    with open(Path(checkpoint) / "state.pkl", "rb") as handle:
        return pickle.load(handle)
