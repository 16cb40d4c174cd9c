"""The ordinal benchmark's configuration: methods, metrics and every knob, defined once.

Both the runner (:mod:`ratingrl.experiments.ordinal_bench`) and the command
(``ratingrl bench ordinal``, :mod:`ratingrl.cli.bench`) read it; it needs neither PyTorch nor
SciPy, so the ``ratingrl`` command can build its options without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ratingrl.config_fields import described as _f
from ratingrl.ordinal.data import ImageTaskConfig
from ratingrl.ordinal.rewards import RewardWeights

if TYPE_CHECKING:
    from ratingrl.ordinal.models import HeadKind

__all__ = [
    "GRPO_METHODS",
    "METHODS",
    "SUPERVISED",
    "TABLE_METRICS",
    "WARM",
    "OrdinalBenchConfig",
]

SUPERVISED: dict[str, HeadKind] = {
    "cross_entropy": "categorical",
    "mse": "scalar",
    "cumulative_logit": "cumulative",
}
GRPO_METHODS = ("grpo_regression", "grpo_ranking", "grpo_joint", "grpo_joint_rmo")
METHODS: tuple[str, ...] = (*SUPERVISED, *GRPO_METHODS)
WARM = "warm_start"
TABLE_METRICS = ("mae", "accuracy", "kendall_tau", "spearman", "query_tau")


@dataclass(frozen=True)
class OrdinalBenchConfig:
    """Every knob of the benchmark; the result JSON stores all of them."""

    seeds: int = _f(3, "Number of seeds (0 .. seeds-1); each seed redraws data, init and sampling.")
    methods: tuple[str, ...] = _f(METHODS, "Methods to compare (subset of METHODS).")
    train_per_task: int = _f(2000, "Training images per task (a fixed pool, reused across steps).")
    test_per_task: int = _f(1000, "Held-out images per task.")
    image_size: int = _f(20, "Image side in pixels.")
    num_values: int = _f(10, "Ordinal values per task (labels 0 .. num_values-1).")
    noise: float = _f(0.15, "Pixel noise standard deviation.")
    query_sizes: tuple[int, ...] = _f((1, 2, 4, 8), "Images per query; one size is drawn per step.")
    images_per_step: int = _f(64, "Images per training step (GRPO: queries x query size).")
    warm_steps: int = _f(500, "Supervised cross-entropy steps of the GRPO warm start.")
    steps: int = _f(500, "Steps after the warm start (GRPO steps, or more supervised steps).")
    supervised_lr: float = _f(2e-3, "Adam learning rate of the supervised training.")
    grpo_lr: float = _f(1e-3, "Adam learning rate of GRPO.")
    group_size: int = _f(8, "GRPO answers G sampled per query.")
    inner_updates: int = _f(4, "GRPO gradient steps per sampled batch (PPO-style reuse).")
    clip_eps: float = _f(0.2, "GRPO ratio clipping range.")
    kl_beta: float = _f(0.04, "Weight of the KL penalty to the frozen warm start.")
    delta: float = _f(3.0, "Regression-reward tolerance, in ordinal steps.")
    weight_regression: float = _f(1.0, "lambda_reg of the joint reward.")
    weight_ranking: float = _f(1.0, "lambda_rank of the joint reward.")
    weight_format: float = _f(0.5, "lambda_fmt of the joint reward (constant for the CNN).")
    two_stage_fraction: float = _f(0.5, "Share of GRPO steps on the regression reward (joint).")
    mutation_probability: float = _f(0.5, "RMO: chance p to mutate a zero-variance group.")
    mutation_replaced: int = _f(1, "RMO: number k of lowest answers replaced by the truth.")
    workers: int = _f(2, "Parallel worker processes (1 runs everything in this process).")
    threads_per_worker: int = _f(1, "Torch threads per worker (or in-process with workers=1).")

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")
        if any(self.images_per_step < n for n in self.query_sizes):
            raise ValueError("images_per_step must hold at least one query of each size")

    @classmethod
    def quick(cls, **overrides: Any) -> OrdinalBenchConfig:
        """A smoke-size configuration (seconds, not minutes); results mean nothing."""
        small = dict(
            seeds=2,
            train_per_task=80,
            test_per_task=48,
            images_per_step=16,
            warm_steps=10,
            steps=6,
            group_size=4,
            inner_updates=2,
            workers=1,
        )
        return cls(**{**small, **overrides})

    def task_config(self) -> ImageTaskConfig:
        return ImageTaskConfig(self.image_size, self.num_values, self.noise)

    def weights(self) -> RewardWeights:
        return RewardWeights(self.weight_regression, self.weight_ranking, self.weight_format)

    @staticmethod
    def help(name: str) -> str:
        """The help string of one field (used by the CLI)."""
        return next(f.metadata["help"] for f in fields(OrdinalBenchConfig) if f.name == name)
