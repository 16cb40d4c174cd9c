"""One trainer for every reward-learning method, with one typed config per method.

All methods share the same machinery, so they differ only where the papers differ:

- the data: ratings (rbrl, r4, multitask, regression) or preference pairs (bt);
- how a batch is drawn: random segments, R4's stratified groups (one segment per class), or
  random pairs;
- the loss (``ratingrl.rewards.losses``).

Shared by all, so comparisons are fair: a validation split of the labels (default 10%) for early
stopping and model selection (with noisy labels an unregularised run overfits badly), ensembles
with per-member bootstrap resampling, Adam with optional L2 weight decay, and the same logged
numbers (loss, validation Kendall tau and label accuracy).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from ratingrl.feedback.segments import PreferencePairs, RatedSegments, SegmentSet
from ratingrl.rewards import losses
from ratingrl.rewards.metrics import kendall_tau, pair_accuracy, quantile_label_accuracy
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig

__all__ = [
    "RbRLConfig",
    "R4Config",
    "MultiTaskConfig",
    "BTConfig",
    "RegressionConfig",
    "MethodConfig",
    "METHODS",
    "method_config",
    "parse_method_spec",
    "split_method_specs",
    "TrainerConfig",
    "TrainResult",
    "TrainingError",
    "train_reward_model",
    "train_mixed",
]


class TrainingError(ValueError):
    """Data or configuration that reward training cannot use."""


# -- per-method configs ----------------------------------------------------------------------
@dataclass(frozen=True)
class RbRLConfig:
    """RbRL: boundary softmax + cross-entropy over rating classes."""

    kappa: float = field(default=30.0, metadata={"help": "sharpness of the class intervals"})
    name: str = "rbrl"


@dataclass(frozen=True)
class R4Config:
    """R4: soft-rank MSE over stratified groups, plus a per-tensor weight-norm penalty."""

    regularization_strength: float = field(
        default=1.0, metadata={"help": "soft-rank eps; acts as a margin in return units"}
    )
    norm_penalty: float = field(default=0.01, metadata={"help": "lambda of sum_W ||W||_2"})
    groups_per_batch: int = field(default=64, metadata={"help": "groups (one per class) a batch"})
    name: str = "r4"


@dataclass(frozen=True)
class MultiTaskConfig:
    """Classification (RbRL) + regression to log(1 + alpha H c), weighted by uncertainty."""

    kappa: float = 30.0
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
    name: str = "multitask"


@dataclass(frozen=True)
class BTConfig:
    """Bradley-Terry on preference pairs (the PEBBLE baseline)."""

    name: str = "bt"


@dataclass(frozen=True)
class RegressionConfig:
    """MSE of the predicted return to ``scale * rating`` (naive baseline)."""

    scale: float = 1.0
    name: str = "regression"


MethodConfig = RbRLConfig | R4Config | MultiTaskConfig | BTConfig | RegressionConfig
METHODS: dict[str, type] = {
    "rbrl": RbRLConfig,
    "r4": R4Config,
    "multitask": MultiTaskConfig,
    "bt": BTConfig,
    "regression": RegressionConfig,
}


def method_config(name: str, **overrides: object) -> MethodConfig:
    """The default config of method ``name`` (with ``overrides``), or a clear error."""
    if name not in METHODS:
        raise TrainingError(f"unknown method {name!r}; known methods: {sorted(METHODS)}")
    known = set(METHODS[name].__dataclass_fields__) - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TrainingError(
            f"method {name!r} has no setting {unknown}; its settings: {sorted(known)}"
        )
    return METHODS[name](**overrides)


def _parse_value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_method_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"r4[norm_penalty=0.05,regularization_strength=0.5]"`` -> ``("r4", {...})``.

    Lets a benchmark compare variants of one method side by side (ablations) under names that
    say exactly what was changed.

    >>> parse_method_spec("r4[norm_penalty=0.05]")
    ('r4', {'norm_penalty': 0.05})
    """
    spec = spec.strip()
    if "[" not in spec:
        return spec, {}
    if not spec.endswith("]"):
        raise TrainingError(f"method spec {spec!r} must look like name[key=value,...]")
    name, body = spec[:-1].split("[", 1)
    overrides = {}
    for item in filter(None, (x.strip() for x in body.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainingError(f"method spec {spec!r}: {item!r} is not key=value")
        overrides[key.strip()] = _parse_value(value.strip())
    return name.strip(), overrides


def split_method_specs(text: str) -> tuple[str, ...]:
    """Split ``"r4,rbrl,r4[kappa=10,x=1]"`` on the commas that are outside brackets."""
    return tuple(s.strip() for s in re.split(r",(?![^\[]*\])", text) if s.strip())


@dataclass(frozen=True)
class TrainerConfig:
    """Settings every method shares."""

    epochs: int = field(default=100, metadata={"help": "maximum passes over the labels"})
    batch_size: int = field(default=128, metadata={"help": "segments (or pairs) per batch"})
    min_batches_per_epoch: int = field(
        default=10, metadata={"help": "so that 100 labels still get enough updates per epoch"}
    )
    lr: float = 3e-4
    weight_decay: float = field(default=0.0, metadata={"help": "L2 regularisation (Adam)"})
    val_fraction: float = field(default=0.1, metadata={"help": "labels held out for selection"})
    patience: int = field(default=10, metadata={"help": "epochs without improvement to stop"})
    bootstrap: bool = field(default=True, metadata={"help": "each member on its own resample"})
    seed: int = 0
    net: RewardNetConfig = field(default_factory=RewardNetConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise TrainingError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 2:
            raise TrainingError(f"epochs >= 1 and batch_size >= 2 needed, got {self}")


@dataclass
class TrainResult:
    """The selected model and what happened on the way."""

    model: RewardEnsemble
    history: list[dict]
    best_epoch: int
    best_val_score: float
    extra: dict = field(default_factory=dict)


# -- batch samplers --------------------------------------------------------------------------
def _resample(indices: np.ndarray, labels: np.ndarray | None, bootstrap: bool, rng) -> np.ndarray:
    """A bootstrap resample, stratified by label when labels are given (no class vanishes)."""
    if not bootstrap:
        return indices.copy()
    if labels is None:
        return rng.choice(indices, size=len(indices), replace=True)
    parts = [
        rng.choice(indices[labels[indices] == c], size=int((labels[indices] == c).sum()))
        for c in np.unique(labels[indices])
    ]
    return np.concatenate(parts)


def _item_batches(member_pools: list[np.ndarray], batch: int, min_batches: int, rng):
    """Yield index arrays ``[E, B]``: each member walks a shuffled copy of its own pool."""
    n = len(member_pools[0])
    n_batches = max(math.ceil(n / batch), min_batches)
    need = n_batches * min(batch, n)
    orders = []
    for pool in member_pools:
        reps = math.ceil(need / n)
        orders.append(np.concatenate([rng.permutation(pool) for _ in range(reps)])[:need])
    stacked = np.stack(orders)
    size = min(batch, n)
    for k in range(n_batches):
        yield stacked[:, k * size : (k + 1) * size]


def _group_batches(
    member_pools: list[np.ndarray],
    labels: np.ndarray,
    classes: np.ndarray,
    groups: int,
    min_batches: int,
    rng,
):
    """Yield index arrays ``[E, G, m]``: R4's groups with one segment per class.

    Each epoch every class pool is shuffled and the smaller pools are topped up by sampling with
    replacement, so every class appears in every group and all labels are used.
    """
    per_member = []
    for pool in member_pools:
        by_class = [pool[labels[pool] == c] for c in classes]
        n_groups = max(len(p) for p in by_class)
        columns = [
            np.concatenate([rng.permutation(p), rng.choice(p, n_groups - len(p))]) for p in by_class
        ]
        per_member.append(np.stack(columns, axis=1)[rng.permutation(n_groups)])
    n_groups = min(len(g) for g in per_member)
    n_batches = max(math.ceil(n_groups / groups), min_batches)
    size = min(groups, n_groups)
    for _ in range(n_batches):
        pick = [g[rng.choice(len(g), size, replace=False)] for g in per_member]
        yield np.stack(pick)


# -- the trainer -----------------------------------------------------------------------------
class _Tensors:
    """Segments as tensors, gathered by index arrays of any shape."""

    def __init__(self, segments: SegmentSet) -> None:
        self.obs = torch.as_tensor(segments.obs)
        self.acts = torch.as_tensor(segments.acts)

    def returns(self, model: RewardEnsemble, index: np.ndarray) -> Tensor:
        idx = torch.as_tensor(index)
        return model.forward_members(self.obs[idx], self.acts[idx]).sum(-1)


def _split(n: int, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split; at least 2 validation items when there is a split."""
    order = rng.permutation(n)
    n_val = 0 if fraction == 0 else max(2, round(fraction * n))
    if n - n_val < 2:
        raise TrainingError(f"{n} labels are too few to train with val_fraction={fraction}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _check_rating_classes(data: RatedSegments, method: MethodConfig) -> np.ndarray:
    counts = data.class_counts()
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise TrainingError(
            f"ratings use only class {present.tolist()} of 0..{data.scale.n - 1}: "
            "learning a reward needs at least two different ratings"
        )
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        warnings.warn(
            f"rating classes {empty} have no labels; {method.name} will train on the "
            f"{len(present)} classes present",
            stacklevel=3,
        )
    return present


def train_reward_model(
    data: RatedSegments | PreferencePairs,
    method: MethodConfig,
    config: TrainerConfig | None = None,
    *,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or continue training) a reward ensemble with ``method`` on ``data``.

    Returns the model of the epoch with the best validation score (Kendall tau-b between
    predicted returns and held-out ratings, or agreement on held-out preference pairs), which
    is also how early stopping decides. ``on_epoch`` receives each epoch's log row.
    """
    config = config or TrainerConfig()
    is_pairs = isinstance(data, PreferencePairs)
    if isinstance(method, BTConfig) != is_pairs:
        kind = "preference pairs" if is_pairs else "rated segments"
        raise TrainingError(f"method {method.name!r} cannot learn from {kind}")
    rng = np.random.default_rng(config.seed)
    segments = data.first if is_pairs else data.segments
    if model is None:
        model = RewardEnsemble(segments.obs_dim, segments.act_dim, config.net, config.seed)
        model.fit_normalizer(segments.obs, segments.acts)
    elif (model.obs_dim, model.act_dim) != (segments.obs_dim, segments.act_dim):
        raise TrainingError(
            f"model expects obs/act dims {(model.obs_dim, model.act_dim)}, data has "
            f"{(segments.obs_dim, segments.act_dim)}"
        )
    trainer = (
        _PairTrainer(data, method, config, rng)
        if is_pairs
        else _RatingTrainer(data, method, config, rng)
    )
    return trainer.fit(model, on_epoch)


class _Trainer:
    """The epoch loop, early stopping and model selection shared by every method."""

    def __init__(self, method: MethodConfig, config: TrainerConfig, rng) -> None:
        self.method, self.config, self.rng = method, config, rng
        self.extra_params: list[Tensor] = []

    def fit(self, model: RewardEnsemble, on_epoch) -> TrainResult:
        params = list(model.parameters()) + self.extra_params
        optimizer = torch.optim.Adam(
            params, lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        history: list[dict] = []
        best = (-math.inf, 0, copy.deepcopy(model.state_dict()))
        for epoch in range(1, self.config.epochs + 1):
            model.train()
            batch_losses = []
            for batch in self.batches():
                loss = self.loss(model, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                batch_losses.append(loss.item())
            model.eval()
            row = {"epoch": epoch, "loss": float(np.mean(batch_losses)), **self.validate(model)}
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            score = row["val_score"]
            if not np.isfinite(score):
                score = -row["loss"]  # no validation split: keep the latest, lowest-loss model
            if score > best[0] or not self.has_validation:
                best = (score, epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= self.config.patience:
                break
        model.load_state_dict(best[2])
        model.eval()
        return TrainResult(model, history, best[1], float(best[0]), self.extra())

    def extra(self) -> dict:
        return {"method": asdict(self.method), "trainer": asdict(self.config)}


class _RatingTrainer(_Trainer):
    def __init__(self, data: RatedSegments, method, config, rng) -> None:
        super().__init__(method, config, rng)
        self.data, self.n_classes = data, data.scale.n
        self.classes = _check_rating_classes(data, method)
        self.labels = data.ratings
        self.tensors = _Tensors(data.segments)
        self.train_idx, self.val_idx = _split(len(data), config.val_fraction, rng)
        self.has_validation = len(self.val_idx) > 0
        train_classes = np.unique(self.labels[self.train_idx])
        if isinstance(method, R4Config) and len(train_classes) < 2:
            raise TrainingError("the R4 training split holds a single rating class")
        self.pools = [
            _resample(self.train_idx, self.labels, config.bootstrap, rng)
            for _ in range(config.net.ensemble_size)
        ]
        self.labels_t = torch.as_tensor(self.labels)
        self.log_vars = torch.zeros(2, requires_grad=True)
        if isinstance(method, MultiTaskConfig) and method.weighting == "learned":
            self.extra_params = [self.log_vars]

    def batches(self):
        if isinstance(self.method, R4Config):
            classes = np.unique(self.labels[self.train_idx])
            return _group_batches(
                self.pools,
                self.labels,
                classes,
                self.method.groups_per_batch,
                self.config.min_batches_per_epoch,
                self.rng,
            )
        return _item_batches(
            self.pools, self.config.batch_size, self.config.min_batches_per_epoch, self.rng
        )

    def loss(self, model: RewardEnsemble, index: np.ndarray) -> Tensor:
        returns = self.tensors.returns(model, index)
        labels = self.labels_t[torch.as_tensor(index)]
        m = self.method
        if isinstance(m, R4Config):
            penalty = losses.weight_norm_penalty(model.weight_tensors())
            return losses.rmse_loss(returns, labels, m.regularization_strength) + (
                m.norm_penalty * penalty
            )
        if isinstance(m, RbRLConfig):
            return losses.rbrl_loss(returns, labels, self.n_classes, m.kappa)
        if isinstance(m, MultiTaskConfig):
            horizon = self.data.segments.horizon
            alpha = m.alpha if m.alpha is not None else 1.0 / horizon
            return losses.multitask_loss(
                returns,
                labels,
                self.n_classes,
                self.log_vars,
                horizon=horizon,
                alpha=alpha,
                kappa=m.kappa,
                weighting=m.weighting,
            )
        return losses.regression_loss(returns, labels, m.scale)

    @torch.no_grad()
    def validate(self, model: RewardEnsemble) -> dict:
        if not self.has_validation:
            return {"val_score": float("nan"), "val_accuracy": float("nan")}
        seg = self.data.segments
        pred = model.predict_returns(seg.obs[self.val_idx], seg.acts[self.val_idx]).mean(0)
        labels = self.labels[self.val_idx]
        return {
            "val_score": kendall_tau(pred, labels),
            "val_accuracy": quantile_label_accuracy(pred, labels, self.n_classes),
        }

    def extra(self) -> dict:
        out = super().extra()
        if self.extra_params:
            out["log_vars"] = self.log_vars.detach().tolist()
        return out


class _PairTrainer(_Trainer):
    def __init__(self, data: PreferencePairs, method, config, rng) -> None:
        super().__init__(method, config, rng)
        self.data = data
        self.first, self.second = _Tensors(data.first), _Tensors(data.second)
        self.labels_t = torch.as_tensor(data.labels)
        self.train_idx, self.val_idx = _split(len(data), config.val_fraction, rng)
        self.has_validation = len(self.val_idx) > 0
        self.pools = [
            _resample(self.train_idx, None, config.bootstrap, rng)
            for _ in range(config.net.ensemble_size)
        ]

    def batches(self):
        return _item_batches(
            self.pools, self.config.batch_size, self.config.min_batches_per_epoch, self.rng
        )

    def loss(self, model: RewardEnsemble, index: np.ndarray) -> Tensor:
        labels = self.labels_t[torch.as_tensor(index)]
        return losses.bt_loss(
            self.first.returns(model, index), self.second.returns(model, index), labels
        )

    @torch.no_grad()
    def validate(self, model: RewardEnsemble) -> dict:
        if not self.has_validation:
            return {"val_score": float("nan"), "val_accuracy": float("nan")}
        a, b = self.data.first, self.data.second
        v = self.val_idx
        ra = model.predict_returns(a.obs[v], a.acts[v]).mean(0)
        rb = model.predict_returns(b.obs[v], b.acts[v]).mean(0)
        accuracy = pair_accuracy(ra, rb, self.data.labels[v])
        return {"val_score": accuracy, "val_accuracy": accuracy}


# -- ratings and preferences together --------------------------------------------------------
# Each step draws a batch of ratings (the rating method's own sampler, e.g. R4's stratified
# groups) and a batch of pairs, and minimises ``rating_loss + preference_weight * bt_loss``.
# Model selection uses the mean of the two validation scores. Living beside the single-source
# trainers, mixed training shares their samplers, losses and epoch loop and cannot drift.


class _MixedTrainer(_Trainer):
    def __init__(self, ratings: _RatingTrainer, pairs: _PairTrainer, weight: float) -> None:
        super().__init__(ratings.method, ratings.config, ratings.rng)
        self.ratings, self.pairs, self.weight = ratings, pairs, weight
        self.extra_params = ratings.extra_params
        self.has_validation = ratings.has_validation or pairs.has_validation

    def batches(self):
        rating_batches = list(self.ratings.batches())
        pair_batches = list(self.pairs.batches())
        n = max(len(rating_batches), len(pair_batches))
        cycle = itertools.cycle
        return itertools.islice(zip(cycle(rating_batches), cycle(pair_batches), strict=False), n)

    def loss(self, model: RewardEnsemble, batch) -> torch.Tensor:
        rating_batch, pair_batch = batch
        return self.ratings.loss(model, rating_batch) + self.weight * self.pairs.loss(
            model, pair_batch
        )

    def validate(self, model: RewardEnsemble) -> dict:
        r, p = self.ratings.validate(model), self.pairs.validate(model)
        scores = [s for s in (r["val_score"], p["val_score"]) if np.isfinite(s)]
        return {
            "val_score": float(np.mean(scores)) if scores else float("nan"),
            "val_accuracy": r["val_accuracy"],
            "val_rating_tau": r["val_score"],
            "val_pair_accuracy": p["val_score"],
        }

    def extra(self) -> dict:
        return {**self.ratings.extra(), "preference_weight": self.weight}


def train_mixed(
    ratings: RatedSegments,
    preferences: PreferencePairs,
    method: MethodConfig,
    config: TrainerConfig | None = None,
    *,
    preference_weight: float = 1.0,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or continue training) a reward ensemble on ratings and preference pairs together.

    ``method`` is the rating method (r4, rbrl, multitask, regression); pairs always use
    Bradley-Terry.
    """
    config = config or TrainerConfig()
    if isinstance(method, BTConfig):
        raise TrainingError("mixed training needs a rating method for the ratings, not 'bt'")
    seg, first = ratings.segments, preferences.first
    if (seg.obs_dim, seg.act_dim) != (first.obs_dim, first.act_dim):
        raise TrainingError(
            f"ratings have obs/act dims {(seg.obs_dim, seg.act_dim)} but preferences have "
            f"{(first.obs_dim, first.act_dim)}"
        )
    rng = np.random.default_rng(config.seed)
    if model is None:
        model = RewardEnsemble(seg.obs_dim, seg.act_dim, config.net, config.seed)
        obs = np.concatenate([seg.obs.reshape(-1, seg.obs_dim), first.obs.reshape(-1, seg.obs_dim)])
        acts = np.concatenate(
            [seg.acts.reshape(-1, seg.act_dim), first.acts.reshape(-1, seg.act_dim)]
        )
        model.fit_normalizer(obs, acts)
    trainer = _MixedTrainer(
        _RatingTrainer(ratings, method, config, rng),
        _PairTrainer(preferences, BTConfig(), config, rng),
        preference_weight,
    )
    return trainer.fit(model, on_epoch)
