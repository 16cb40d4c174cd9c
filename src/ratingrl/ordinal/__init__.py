"""Ranking-aware rewards and GRPO for ordinal prediction (RARL, arXiv 2601.20585).

* :mod:`~ratingrl.ordinal.rewards`: regression, Kendall-tau ranking and format rewards, as
  vectorised numpy functions and as TRL reward callables (numpy only).
* :mod:`~ratingrl.ordinal.grpo` and :mod:`~ratingrl.ordinal.mutation`: GRPO for any policy that
  scores its answers, with response mutation and the two-stage reward schedule.
* :mod:`~ratingrl.ordinal.data`, :mod:`~ratingrl.ordinal.models`,
  :mod:`~ratingrl.ordinal.baselines`, :mod:`~ratingrl.ordinal.metrics`: the procedural image
  benchmark, its CNN policy and supervised baselines.
* :mod:`~ratingrl.ordinal.trl`: glue for TRL's ``GRPOTrainer`` (optional extra ``[trl]``).

The rewards are re-exported here; the torch-based names load on first use, so
``from ratingrl.ordinal import JointReward`` does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ratingrl.ordinal.rewards import (
    FormatReward,
    JointReward,
    RankingReward,
    RegressionReward,
    RewardWeights,
    joint_scores,
    kendall_tau,
    parse_answers,
    parse_targets,
    ranking_scores,
    regression_scores,
)

_LAZY = {
    "GRPOConfig": "grpo",
    "GRPOBatch": "grpo",
    "TwoStageSchedule": "grpo",
    "array_reward_fn": "grpo",
    "group_advantages": "grpo",
    "grpo_step": "grpo",
    "train_grpo": "grpo",
    "MutationConfig": "mutation",
    "mutate_groups": "mutation",
    "ItemwisePolicy": "models",
    "OrdinalCNN": "models",
    "make_images": "data",
}

__all__ = [
    "FormatReward",
    "JointReward",
    "RankingReward",
    "RegressionReward",
    "RewardWeights",
    "joint_scores",
    "kendall_tau",
    "parse_answers",
    "parse_targets",
    "ranking_scores",
    "regression_scores",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import torch-based names on first access (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"ratingrl.ordinal.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ratingrl.ordinal' has no attribute {name!r}")
