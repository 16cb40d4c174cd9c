"""Reward-learning methods as registered objects, so that a new method is one class.

A method says only what the papers make it differ in: the labels it learns from
(``data_kind``: ``"ratings"`` or ``"pairs"``), how an epoch's batches are drawn (random items,
or R4's groups of one segment per class; see :mod:`ratingrl.rewards.batching`), its loss (a call
into the pure functions of :mod:`ratingrl.rewards.losses`), any learnable tensors of its own
(multi-task's log-variances) and a check of the labels. Everything else (validation split,
bootstrap, ensemble, optimiser, early stopping) is the shared trainer's
(:mod:`ratingrl.rewards.training`), so comparisons stay fair.

A method is a frozen dataclass whose fields are its settings (``metadata={"help": ...}``),
registered under a name: ``@register("hinge")`` above ``@dataclass(frozen=True)`` on a subclass
of :class:`RewardMethod` that implements :meth:`RewardMethod.loss`. A method in the user's own
module becomes known once :func:`load_plugins` imports that module (``"my_module"`` or
``"path/to/file.py"``); then ``make_method("hinge", margin=0.5)`` and specs like
``"hinge[margin=0.5]"`` work wherever a method is named.

Where a paper is silent, a built-in method's defaults follow its authors' released code (the
numbers users compare with), and the form ratingrl used before 2026-12-03 stays one setting away:
``r4[loss_reduction=sum_per_group,penalty_params=weights]`` and ``rbrl[boundary_gradient=true]``.

The interface and the registry live in :mod:`ratingrl.rewards.registry`; this module re-exports
them, so ``from ratingrl.rewards.methods import register, RewardMethod`` is the one import a
plugin needs, and importing it registers the built-in methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from ratingrl.rewards import losses
from ratingrl.rewards.batching import group_batches
from ratingrl.rewards.registry import (
    METHODS,
    Batch,
    DataInfo,
    DataKind,
    RewardMethod,
    TrainingError,
    load_plugins,
    make_method,
    method_class,
    parse_method_spec,
    register,
    registered_methods,
    split_method_specs,
    unregister,
)

__all__ = [
    "TrainingError",
    "DataKind",
    "DataInfo",
    "Batch",
    "RewardMethod",
    "register",
    "unregister",
    "method_class",
    "make_method",
    "registered_methods",
    "METHODS",
    "load_plugins",
    "parse_method_spec",
    "split_method_specs",
    "RbRL",
    "R4",
    "MultiTask",
    "BradleyTerry",
    "Regression",
    "R4PenaltyParams",
]

R4PenaltyParams = Literal["all", "weights"]


def _check_choice(method: str, key: str, value: object, choices: object) -> None:
    if value not in get_args(choices):
        raise TrainingError(f"{method} {key} {value!r} not in {get_args(choices)}")


def _check_bool(method: str, key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TrainingError(f"{method} {key} takes true or false, got {value!r}")


# -- the built-in methods ----------------------------------------------------------------------
@register("rbrl")
@dataclass(frozen=True)
class RbRL(RewardMethod):
    """RbRL (White et al. 2024): boundary softmax + cross-entropy over rating classes."""

    kappa: float = field(default=30.0, metadata={"help": "sharpness of the class intervals"})
    boundary_gradient: bool = field(
        default=False,
        metadata={
            "help": "differentiate through the class boundaries too. false: they are constants "
            "of the batch, as in RbRL's released code (the paper does not say); true: the form "
            "ratingrl used before 2026-12-03 (same loss, other gradient on the boundary segments)"
        },
    )

    def __post_init__(self) -> None:
        _check_bool("rbrl", "boundary_gradient", self.boundary_gradient)

    def loss(self, batch: Batch) -> Tensor:
        return losses.rbrl_loss(
            batch.returns,
            batch.labels,
            batch.data.n_classes,
            self.kappa,
            boundary_gradient=self.boundary_gradient,
        )


@register("r4")
@dataclass(frozen=True)
class R4(RewardMethod):
    """R4 (Kharyal et al. 2026): soft-rank MSE over stratified groups + a weight-norm penalty."""

    regularization_strength: float = field(
        default=1.0, metadata={"help": "soft-rank eps; acts as a margin in return units"}
    )
    norm_penalty: float = field(
        default=0.01, metadata={"help": "lambda of the norm penalty sum ||theta||_2"}
    )
    groups_per_batch: int = field(default=64, metadata={"help": "groups (one per class) a batch"})
    loss_reduction: losses.RmseReduction = field(
        default="mean",
        metadata={
            "help": "mean: the squared soft-rank errors averaged over every segment of the batch, "
            "as in R4's released code; sum_per_group: summed within each group of m, averaged "
            "over groups (ratingrl before 2026-12-03; m times larger, so norm_penalty weighs 1/m "
            "as much)"
        },
    )
    penalty_params: R4PenaltyParams = field(
        default="all",
        metadata={
            "help": "what the norm penalty sums: all = every weight and bias, as in R4's "
            "released code; weights = weight matrices only (ratingrl before 2026-12-03)"
        },
    )

    def __post_init__(self) -> None:
        _check_choice("r4", "loss_reduction", self.loss_reduction, losses.RmseReduction)
        _check_choice("r4", "penalty_params", self.penalty_params, R4PenaltyParams)

    def check_data(self, data: DataInfo) -> None:
        if len(data.train_classes) < 2:
            raise TrainingError("the R4 training split holds a single rating class")

    def batches(self, pools, data, rng, *, batch_size, min_batches) -> Iterable[np.ndarray]:
        """Groups of one segment per class in the training split (``groups_per_batch`` a
        batch, not ``batch_size``): a ranking loss needs every class in every group."""
        classes = data.train_classes
        return group_batches(pools, data.labels, classes, self.groups_per_batch, min_batches, rng)

    def loss(self, batch: Batch) -> Tensor:
        ranking = losses.rmse_loss(
            batch.returns, batch.labels, self.regularization_strength, self.loss_reduction
        )
        if self.penalty_params == "all":
            tensors = list(batch.model.parameters())  # every weight and bias of every member
        else:
            tensors = batch.model.weight_tensors()
        return ranking + self.norm_penalty * losses.weight_norm_penalty(tensors)


@register("multitask")
@dataclass(frozen=True)
class MultiTask(RewardMethod):
    """Classification (RbRL) + regression to ``log(1 + alpha H c)``, weighted by uncertainty."""

    kappa: float = field(default=30.0, metadata={"help": "sharpness of the RbRL class intervals"})
    alpha: float | None = field(
        default=1.0,
        metadata={
            "help": "target scale (unpublished). 1 puts the targets log(1 + H c) on the scale of "
            "segment returns; None = 1/H (targets log(1 + c), at most log K: the default before "
            "2026-12-03, which left the per-step reward nearly flat for a policy)"
        },
    )
    weighting: losses.MultitaskWeighting = field(
        default="learned", metadata={"help": "learned | equal | classification | regression"}
    )

    def __post_init__(self) -> None:
        _check_choice("multitask", "weighting", self.weighting, losses.MultitaskWeighting)

    def extra_parameters(self, data: DataInfo) -> dict[str, Tensor]:
        # Kendall et al.'s log-variances (s_c, s_r), learned only with "learned" weighting
        if self.weighting != "learned":
            return {}
        return {"log_vars": torch.zeros(2, requires_grad=True)}

    def loss(self, batch: Batch) -> Tensor:
        horizon = batch.data.horizon
        return losses.multitask_loss(
            batch.returns,
            batch.labels,
            batch.data.n_classes,
            batch.params.get("log_vars", torch.zeros(2)),  # ignored unless learned
            horizon=horizon,
            alpha=self.alpha if self.alpha is not None else 1.0 / horizon,
            kappa=self.kappa,
            weighting=self.weighting,
        )


@register("bt")
@dataclass(frozen=True)
class BradleyTerry(RewardMethod):
    """Bradley-Terry on preference pairs (the PEBBLE baseline)."""

    data_kind: ClassVar[DataKind] = "pairs"

    def loss(self, batch: Batch) -> Tensor:
        return losses.bt_loss(batch.returns, batch.second_returns, batch.labels)


@register("regression")
@dataclass(frozen=True)
class Regression(RewardMethod):
    """MSE of the predicted return to ``scale * rating`` (naive baseline)."""

    scale: float = field(default=1.0, metadata={"help": "target return per rating class"})

    def loss(self, batch: Batch) -> Tensor:
        return losses.regression_loss(batch.returns, batch.labels, self.scale)


# -- methods defined in modules of their own, registered on import -----------------------------
from ratingrl.rewards import raters as _raters  # noqa: E402, F401  ("raters": a model per rater)
from ratingrl.rewards import robust as _robust  # noqa: E402, F401  ("ordinal": noise-robust)
