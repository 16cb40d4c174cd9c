"""One trainer for every reward-learning method: a weighted sum of (method, data) terms.

A :class:`Term` is one method on one labelled data set (ratings or preference pairs) with a
weight; a step draws one batch of every term and minimises ``sum_i weight_i * loss_i``. Training
on ratings alone is one term; ratings and pairs together (the rating method plus
Bradley-Terry) are two, through the same code. The methods themselves are registered objects
(:mod:`ratingrl.rewards.methods`).

Shared by all, so comparisons are fair: a validation split of the labels (default 10%) for early
stopping and model selection (with noisy labels an unregularised run overfits badly), ensembles
with per-member bootstrap resampling, Adam with optional L2 weight decay, and the same logged
numbers (loss, validation Kendall tau and label accuracy, or pair agreement).

The order in which a run draws from its random generator (split, resamples and batches of each
term in turn, every epoch) is part of its result: it is what makes a run reproducible from its
seed, so it is kept as it was when each source had its own trainer.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from ratingrl.feedback.segments import PreferencePairs, RatedSegments, SegmentSet
from ratingrl.rewards import methods as _methods
from ratingrl.rewards.batching import resample
from ratingrl.rewards.methods import (
    Batch,
    BradleyTerry,
    DataInfo,
    RewardMethod,
    TrainingError,
)
from ratingrl.rewards.metrics import kendall_tau, pair_accuracy, quantile_label_accuracy
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig

__all__ = [
    "TrainerConfig",
    "TrainResult",
    "TrainingError",
    "Term",
    "train_terms",
    "train_reward_model",
    "train_mixed",
]

_MOVED = {
    "RbRLConfig": "RbRL",
    "R4Config": "R4",
    "MultiTaskConfig": "MultiTask",
    "BTConfig": "BradleyTerry",
    "RegressionConfig": "Regression",
    "MethodConfig": "RewardMethod",
    "method_config": "make_method",
    "METHODS": "METHODS",
    "parse_method_spec": "parse_method_spec",
    "split_method_specs": "split_method_specs",
}


def __getattr__(name: str) -> object:
    """Names from before methods were registered objects still import, with a warning that
    says where they live now (``ratingrl.rewards.methods``)."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    new = _MOVED[name]
    warnings.warn(
        f"ratingrl.rewards.training.{name} is now ratingrl.rewards.methods.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_methods, new)


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
    steps: int | None = field(
        default=None,
        metadata={
            "help": "gradient steps in all: epochs run until this many batches are done (the "
            "last one cut short) and ``epochs`` is not used; None: ``epochs`` whole epochs"
        },
    )
    bootstrap: bool = field(default=True, metadata={"help": "each member on its own resample"})
    seed: int = 0
    net: RewardNetConfig = field(default_factory=RewardNetConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise TrainingError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 2:
            raise TrainingError(f"epochs >= 1 and batch_size >= 2 needed, got {self}")
        if self.steps is not None and self.steps < 1:
            raise TrainingError(f"steps must be >= 1 or None, got {self.steps}")


@dataclass
class TrainResult:
    """The selected model and what happened on the way."""

    model: RewardEnsemble
    history: list[dict]
    best_epoch: int
    best_val_score: float
    extra: dict = field(default_factory=dict)
    steps: int = 0  # gradient steps taken, over all epochs


Labels = RatedSegments | PreferencePairs
_KIND_TEXT = {"ratings": "rated segments", "pairs": "preference pairs"}


@dataclass(frozen=True)
class Term:
    """One part of the training loss: ``weight * method.loss`` on batches of ``data``."""

    method: RewardMethod
    data: Labels
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.method, RewardMethod):
            raise TrainingError(
                f"method must be a RewardMethod (see ratingrl.rewards.methods), got "
                f"{type(self.method).__name__}: an unknown method is never trained as another"
            )
        if not isinstance(self.data, RatedSegments | PreferencePairs):
            raise TrainingError(
                f"data must be RatedSegments or PreferencePairs, got {type(self.data).__name__}"
            )
        if _kind(self.data) != self.method.data_kind:
            kind = _KIND_TEXT[_kind(self.data)]
            raise TrainingError(f"method {self.method.name!r} cannot learn from {kind}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise TrainingError(f"Term.weight must be finite and >= 0, got {self.weight!r}")


def _kind(data: Labels) -> str:
    return "pairs" if isinstance(data, PreferencePairs) else "ratings"


def _segments(data: Labels) -> SegmentSet:
    """The segments that stand for a term's data (for pairs, the first of each pair)."""
    return data.first if isinstance(data, PreferencePairs) else data.segments


# -- one term during training ------------------------------------------------------------------
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


def _check_rating_classes(data: RatedSegments, method: RewardMethod) -> None:
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
            stacklevel=5,
        )


class _TermRun:
    """A term's split, members' resamples, batches, loss and validation during one run."""

    def __init__(self, term: Term, config: TrainerConfig, rng: np.random.Generator) -> None:
        self.term, self.method, self.config, self.rng = term, term.method, config, rng
        data = term.data
        if isinstance(data, PreferencePairs):
            labels, n_classes, strata = data.labels, None, None
            self.tensors = [_Tensors(data.first), _Tensors(data.second)]
        else:
            _check_rating_classes(data, self.method)
            labels, n_classes, strata = data.ratings, data.scale.n, data.ratings
            self.tensors = [_Tensors(data.segments)]
        train_idx, self.val_idx = _split(len(data), config.val_fraction, rng)
        horizon = _segments(data).horizon
        self.info = DataInfo(_kind(data), labels, train_idx, horizon, n_classes, data)
        self.method.check_data(self.info)
        self.pools = [
            resample(train_idx, strata, config.bootstrap, rng)
            for _ in range(config.net.ensemble_size)
        ]
        self.labels_t = torch.as_tensor(labels)
        self.params = dict(self.method.extra_parameters(self.info))

    def batches(self) -> list[np.ndarray]:
        size, least = self.config.batch_size, self.config.min_batches_per_epoch
        batches = self.method.batches(
            self.pools, self.info, self.rng, batch_size=size, min_batches=least
        )
        out = list(batches)
        if not out:
            raise TrainingError(f"method {self.method.name!r} drew no batches for an epoch")
        return out

    def loss(self, model: RewardEnsemble, index: np.ndarray) -> Tensor:
        returns = [t.returns(model, index) for t in self.tensors]
        rows = torch.as_tensor(index)
        second = returns[1] if len(returns) > 1 else None
        batch = Batch(returns[0], self.labels_t[rows], model, self.info, self.params, second, rows)
        return self.method.loss(batch)

    @torch.no_grad()
    def validate(self, model: RewardEnsemble) -> dict:
        """Held-out Kendall tau and label accuracy (ratings) or pair agreement (pairs)."""
        if len(self.val_idx) == 0:
            return {"val_score": float("nan"), "val_accuracy": float("nan")}
        v, data = self.val_idx, self.term.data
        if isinstance(data, PreferencePairs):
            ra = model.predict_returns(data.first.obs[v], data.first.acts[v]).mean(0)
            rb = model.predict_returns(data.second.obs[v], data.second.acts[v]).mean(0)
            accuracy = pair_accuracy(ra, rb, data.labels[v])
            return {"val_score": accuracy, "val_accuracy": accuracy}
        pred = model.predict_returns(data.segments.obs[v], data.segments.acts[v]).mean(0)
        labels = data.ratings[v]
        return {
            "val_score": kendall_tau(pred, labels),
            "val_accuracy": quantile_label_accuracy(pred, labels, data.scale.n),
        }


# -- the shared loop ---------------------------------------------------------------------------
_SCORE_NAMES = {"ratings": "rating_tau", "pairs": "pair_accuracy"}


def _score_keys(runs: Sequence[_TermRun]) -> list[str]:
    """Per-term log keys: ``val_rating_tau``, ``val_pair_accuracy``; numbered when repeated."""
    names = [_SCORE_NAMES[run.info.kind] for run in runs]
    return [f"val_{n}" if names.count(n) == 1 else f"val_{n}_{i}" for i, n in enumerate(names)]


def _validate(runs: Sequence[_TermRun], model: RewardEnsemble) -> dict:
    """One term: its own scores. Several: the mean of the finite per-term scores selects the
    model, ``val_accuracy`` is the first term's, and each term's score is logged."""
    rows = [run.validate(model) for run in runs]
    if len(rows) == 1:
        return rows[0]
    scores = [r["val_score"] for r in rows if np.isfinite(r["val_score"])]
    out = {
        "val_score": float(np.mean(scores)) if scores else float("nan"),
        "val_accuracy": rows[0]["val_accuracy"],
    }
    out.update((key, r["val_score"]) for key, r in zip(_score_keys(runs), rows, strict=True))
    return out


def _epoch_batches(runs: Sequence[_TermRun]):
    """Each term's batches, drawn term by term; shorter lists repeat to the longest."""
    per_term = [run.batches() for run in runs]
    n = max(len(b) for b in per_term)
    return itertools.islice(zip(*map(itertools.cycle, per_term), strict=False), n)


def _step(runs: Sequence[_TermRun], model: RewardEnsemble, optimizer, batch) -> float:
    loss = None
    for run, index in zip(runs, batch, strict=True):
        term_loss = run.term.weight * run.loss(model, index)
        loss = term_loss if loss is None else loss + term_loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _fit(runs: Sequence[_TermRun], model: RewardEnsemble, config: TrainerConfig, on_epoch):
    """The epoch loop, early stopping and model selection shared by every method."""
    extra_params = [p for run in runs for p in run.params.values()]
    optimizer = torch.optim.Adam(
        list(model.parameters()) + extra_params, lr=config.lr, weight_decay=config.weight_decay
    )
    # no term that selects by its held-out labels: keep the last model, never stop early
    has_validation = any(len(r.val_idx) and r.method.selects_by_held_out_labels() for r in runs)
    history: list[dict] = []
    best = (-math.inf, 0, copy.deepcopy(model.state_dict()))
    budget, done = config.steps, 0
    for epoch in range(1, config.epochs + 1) if budget is None else itertools.count(1):
        model.train()
        batches = _epoch_batches(runs)
        if budget is not None:  # a fixed number of steps: the last epoch may stop part-way
            batches = itertools.islice(batches, budget - done)
        batch_losses = [_step(runs, model, optimizer, b) for b in batches]
        done += len(batch_losses)
        model.eval()
        row = {"epoch": epoch, "loss": float(np.mean(batch_losses)), **_validate(runs, model)}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        score = row["val_score"]
        if not np.isfinite(score):
            score = -row["loss"]  # no validation split: keep the latest, lowest-loss model
        if score > best[0] or not has_validation:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= config.patience:
            break
        if budget is not None and done >= budget:
            break
    model.load_state_dict(best[2])
    model.eval()
    return TrainResult(model, history, best[1], float(best[0]), _extra(runs, config), done)


def _extra(runs: Sequence[_TermRun], config: TrainerConfig) -> dict:
    out = {"method": asdict(runs[0].method), "trainer": asdict(config)}
    for run in runs:
        out.update((k, p.detach().tolist()) for k, p in run.params.items())
    if len(runs) > 1:
        out["terms"] = [{"method": asdict(r.method), "weight": r.term.weight} for r in runs]
    return out


# -- entry points ------------------------------------------------------------------------------
def _model_for(terms: Sequence[Term], config: TrainerConfig, model: RewardEnsemble | None):
    """A fresh ensemble normalised on every term's segments, or ``model`` if it fits them."""
    first = _segments(terms[0].data)
    for i, term in enumerate(terms[1:], 1):
        seg = _segments(term.data)
        if (seg.obs_dim, seg.act_dim) != (first.obs_dim, first.act_dim):
            raise TrainingError(
                f"term {i} ({_KIND_TEXT[_kind(term.data)]}) has obs/act dims "
                f"{(seg.obs_dim, seg.act_dim)} but term 0 has {(first.obs_dim, first.act_dim)}"
            )
    if model is None:
        model = RewardEnsemble(first.obs_dim, first.act_dim, config.net, config.seed)
        parts = [_segments(t.data) for t in terms]
        obs = np.concatenate([s.obs.reshape(-1, first.obs_dim) for s in parts])
        acts = np.concatenate([s.acts.reshape(-1, first.act_dim) for s in parts])
        model.fit_normalizer(obs, acts)
    elif (model.obs_dim, model.act_dim) != (first.obs_dim, first.act_dim):
        raise TrainingError(
            f"model expects obs/act dims {(model.obs_dim, model.act_dim)}, data has "
            f"{(first.obs_dim, first.act_dim)}"
        )
    return model


def train_terms(
    terms: Sequence[Term],
    config: TrainerConfig | None = None,
    *,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or continue training) a reward ensemble on ``sum_i weight_i * loss_i``.

    Every step takes one batch of each term (a term with fewer batches an epoch repeats its
    own), so each source of labels keeps its method's batching. Returns the model of the epoch
    with the best validation score (the mean of the terms' finite scores), which is also how
    early stopping decides (the last, if no term's method selects by its held-out labels:
    ``RewardMethod.selects_by_held_out_labels``). ``on_epoch`` receives each epoch's log row.
    """
    config = config or TrainerConfig()
    terms = list(terms)
    if not terms:
        raise TrainingError("train_terms needs at least one term")
    if not all(isinstance(t, Term) for t in terms):
        raise TrainingError(f"terms must be Term objects, got {[type(t).__name__ for t in terms]}")
    rng = np.random.default_rng(config.seed)
    model = _model_for(terms, config, model)
    runs = [_TermRun(term, config, rng) for term in terms]
    return _fit(runs, model, config, on_epoch)


def train_reward_model(
    data: Labels,
    method: RewardMethod,
    config: TrainerConfig | None = None,
    *,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or continue training) a reward ensemble with ``method`` on ``data`` (one term).

    The selected model is the epoch's with the best validation score: Kendall tau-b between
    predicted returns and held-out ratings, or agreement on held-out preference pairs.
    """
    return train_terms([Term(method, data)], config, model=model, on_epoch=on_epoch)


def train_mixed(
    ratings: RatedSegments,
    preferences: PreferencePairs,
    method: RewardMethod,
    config: TrainerConfig | None = None,
    *,
    preference_weight: float = 1.0,
    model: RewardEnsemble | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Ratings with the rating ``method`` plus ``preference_weight`` x Bradley-Terry on pairs.

    Two terms of :func:`train_terms`; the log rows carry ``val_rating_tau`` and
    ``val_pair_accuracy`` beside their mean, ``val_score``.
    """
    if isinstance(method, RewardMethod) and method.data_kind != "ratings":
        raise TrainingError(
            f"mixed training needs a rating method for the ratings, not {method.name!r}"
        )
    seg, first = ratings.segments, preferences.first
    if (seg.obs_dim, seg.act_dim) != (first.obs_dim, first.act_dim):
        raise TrainingError(
            f"ratings have obs/act dims {(seg.obs_dim, seg.act_dim)} but preferences have "
            f"{(first.obs_dim, first.act_dim)}"
        )
    terms = [Term(method, ratings), Term(BradleyTerry(), preferences, preference_weight)]
    result = train_terms(terms, config, model=model, on_epoch=on_epoch)
    result.extra["preference_weight"] = preference_weight
    return result
