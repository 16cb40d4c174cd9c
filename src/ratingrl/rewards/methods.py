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

The registry is module-level: it is the one piece of process state here, and it is what lets a
name in a spec or a config file reach a class defined outside the package.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import ClassVar, Literal, TypeVar, get_args

import numpy as np
import torch
from torch import Tensor

from ratingrl.rewards import losses
from ratingrl.rewards.batching import group_batches, item_batches
from ratingrl.rewards.nets import RewardEnsemble

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
]

DataKind = Literal["ratings", "pairs"]
_M = TypeVar("_M", bound="RewardMethod")


class TrainingError(ValueError):
    """Data, configuration or a method that reward training cannot use."""


# -- what a method sees ------------------------------------------------------------------------
@dataclass(frozen=True)
class DataInfo:
    """What a method may need to know about the labels of one training term.

    ``labels`` holds every label (ratings as class indices, or P(second preferred) for pairs);
    ``train_idx`` the ones training may use (the rest are held out for validation).
    """

    kind: DataKind
    labels: np.ndarray
    train_idx: np.ndarray
    horizon: int
    n_classes: int | None = None  # the rating scale's size (ratings only)

    @property
    def train_classes(self) -> np.ndarray:
        """The rating classes present in the training split (sorted)."""
        return np.unique(self.labels[self.train_idx])


@dataclass(frozen=True)
class Batch:
    """One batch as a method's loss sees it; leading dims are ``[E, ...]`` (one row a member).

    ``returns`` are the predicted segment returns (for pairs: of the first segments, and
    ``second_returns`` of the second); ``labels`` match their trailing shape. ``model`` is there
    for penalties on the weights (R4), ``params`` holds the method's own learnable tensors.
    """

    returns: Tensor
    labels: Tensor
    model: RewardEnsemble
    data: DataInfo
    params: Mapping[str, Tensor]
    second_returns: Tensor | None = None


# -- the base class ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardMethod(ABC):
    """A reward-learning method: subclass, declare settings as fields, implement :meth:`loss`.

    ``name`` is not a setting: it is the name the class is registered under, filled in on
    construction so that ``dataclasses.asdict`` (run plans, saved results) says which method the
    settings belong to.
    """

    name: str = field(init=False, metadata={"help": "the registered name (not a setting)"})
    data_kind: ClassVar[DataKind] = "ratings"

    def __new__(cls, *args: object, **kwargs: object) -> RewardMethod:
        # set here, not in __post_init__, so a subclass's own __post_init__ cannot skip it
        self = super().__new__(cls)
        object.__setattr__(self, "name", vars(cls).get("_registered_name") or cls.__name__)
        return self

    @classmethod
    def settings(cls) -> dict[str, Field]:
        """The method's settings (``name`` excluded): default and ``metadata["help"]`` each."""
        return {f.name: f for f in fields(cls) if f.init}

    def check_data(self, data: DataInfo) -> None:  # noqa: B027 (optional hook)
        """Raise :class:`TrainingError` if this method cannot learn from these labels."""

    def extra_parameters(self, data: DataInfo) -> dict[str, Tensor]:
        """Fresh learnable tensors (beyond the reward net) for one training run, by name.

        The trainer's optimiser updates them and the run's ``extra`` reports their final values.
        """
        return {}

    def batches(
        self,
        pools: Sequence[np.ndarray],
        data: DataInfo,
        rng: np.random.Generator,
        *,
        batch_size: int,
        min_batches: int,
    ) -> Iterable[np.ndarray]:
        """One epoch's batches: index arrays ``[E, ...]`` into the labels, one row a member.

        ``pools[e]`` is member e's resample of the training labels. The default draws random
        items (segments or pairs), ``batch_size`` a batch and at least ``min_batches``.
        """
        return item_batches(pools, batch_size, min_batches, rng)

    @abstractmethod
    def loss(self, batch: Batch) -> Tensor:
        """The scalar loss of one batch (the mean over members)."""


# -- the registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, type[RewardMethod]] = {}
METHODS: Mapping[str, type[RewardMethod]] = MappingProxyType(_REGISTRY)
"""A read-only, live view of the registry: name -> method class."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def register(name: str, *, replace: bool = False) -> Callable[[type[_M]], type[_M]]:
    """Class decorator: make a :class:`RewardMethod` dataclass known under ``name``.

    Put it above ``@dataclass(frozen=True)``. Registering a second class under a taken name is
    an error (two plugins claiming one name would otherwise silently depend on import order)
    unless ``replace=True``; registering the same class again is a no-op, so re-running a
    module's registrations is harmless.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TrainingError(f"method name {name!r} must be a word (letters, digits, _ . -)")

    def decorate(cls: type[_M]) -> type[_M]:
        if not (isinstance(cls, type) and issubclass(cls, RewardMethod)):
            raise TrainingError(f"register({name!r}): {cls!r} is not a RewardMethod subclass")
        params = vars(cls).get("__dataclass_params__")
        if params is None or not params.frozen:
            raise TrainingError(
                f"register({name!r}): {cls.__qualname__} must be decorated with "
                "@dataclass(frozen=True), below @register"
            )
        if cls.data_kind not in get_args(DataKind):
            raise TrainingError(
                f"{cls.__qualname__}.data_kind = {cls.data_kind!r}, not one of {get_args(DataKind)}"
            )
        other = vars(cls).get("_registered_name")
        if other not in (None, name) and _REGISTRY.get(other) is cls:
            raise TrainingError(f"{cls.__qualname__} is already registered as {other!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls and not replace:
            raise TrainingError(
                f"method {name!r} is already registered ({existing.__module__}."
                f"{existing.__qualname__}); use register({name!r}, replace=True) to replace it"
            )
        cls._registered_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Forget method ``name`` (a test or a notebook undoing its registration)."""
    method_class(name)
    del _REGISTRY[name]


def registered_methods() -> dict[str, type[RewardMethod]]:
    """Every registered method, name -> class, in registration order (built-ins first)."""
    return dict(_REGISTRY)


def method_class(name: str) -> type[RewardMethod]:
    """The class registered as ``name``; an unknown name is an error, never a fallback."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TrainingError(
            f"unknown method {name!r}; known methods: {sorted(_REGISTRY)} (a method of your own "
            "module is known once the module is loaded as a plugin)"
        ) from None


def make_method(name: str, /, **settings: object) -> RewardMethod:
    """Method ``name`` with its defaults replaced by ``settings``, or a clear error.

    A misspelt setting names the method's settings: silently ignoring it would run an ablation
    that is not the one asked for.
    """
    cls = method_class(name)
    known = cls.settings()
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise TrainingError(
            f"method {name!r} has no setting {unknown}; its settings: {sorted(known)}"
        )
    for key, value in settings.items():
        default = known[key].default
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if numeric and isinstance(value, str):
            raise TrainingError(f"method {name!r}: setting {key} takes a number, got {value!r}")
    return cls(**settings)


# -- plugins -----------------------------------------------------------------------------------
def load_plugins(modules: Sequence[str]) -> list[ModuleType]:
    """Import the user's modules so that their ``@register`` lines run.

    Each entry is a dotted module name (``my_package.methods``, found on ``sys.path``) or a path
    to a ``.py`` file. Loading is idempotent (a module is imported once per process), which is
    what lets every worker process of a benchmark load the same list.
    """
    if isinstance(modules, str):
        raise TrainingError(f"plugins must be a list of modules, got the string {modules!r}")
    return [_load_file(m) if m.endswith(".py") else _load_module(m) for m in modules]


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as err:  # a plugin's own error at import time, or no such module
        raise TrainingError(f"plugin {name!r} cannot be imported: {_describe(err)}") from err


def _load_file(path_text: str) -> ModuleType:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise TrainingError(f"plugin {path_text!r}: no such file")
    # one module name per file, the same in every process (so a benchmark's workers agree)
    digest = hashlib.blake2s(str(path).encode(), digest_size=5).hexdigest()
    name = f"_ratingrl_plugin_{digest}_" + re.sub(r"\W", "_", path.stem)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TrainingError(f"plugin {path_text!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise TrainingError(f"plugin {path_text!r} cannot be imported: {_describe(err)}") from err
    return module


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, TrainingError) else f"{type(err).__name__}: {err}"


# -- method specs ------------------------------------------------------------------------------
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


# -- the built-in methods ----------------------------------------------------------------------
@register("rbrl")
@dataclass(frozen=True)
class RbRL(RewardMethod):
    """RbRL (White et al. 2024): boundary softmax + cross-entropy over rating classes."""

    kappa: float = field(default=30.0, metadata={"help": "sharpness of the class intervals"})

    def loss(self, batch: Batch) -> Tensor:
        return losses.rbrl_loss(batch.returns, batch.labels, batch.data.n_classes, self.kappa)


@register("r4")
@dataclass(frozen=True)
class R4(RewardMethod):
    """R4 (Kharyal et al. 2026): soft-rank MSE over stratified groups + a weight-norm penalty."""

    regularization_strength: float = field(
        default=1.0, metadata={"help": "soft-rank eps; acts as a margin in return units"}
    )
    norm_penalty: float = field(default=0.01, metadata={"help": "lambda of sum_W ||W||_2"})
    groups_per_batch: int = field(default=64, metadata={"help": "groups (one per class) a batch"})

    def check_data(self, data: DataInfo) -> None:
        if len(data.train_classes) < 2:
            raise TrainingError("the R4 training split holds a single rating class")

    def batches(self, pools, data, rng, *, batch_size, min_batches) -> Iterable[np.ndarray]:
        """Groups of one segment per class in the training split (``groups_per_batch`` a
        batch, not ``batch_size``): a ranking loss needs every class in every group."""
        classes = data.train_classes
        return group_batches(pools, data.labels, classes, self.groups_per_batch, min_batches, rng)

    def loss(self, batch: Batch) -> Tensor:
        penalty = losses.weight_norm_penalty(batch.model.weight_tensors())
        ranking = losses.rmse_loss(batch.returns, batch.labels, self.regularization_strength)
        return ranking + self.norm_penalty * penalty


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
        if self.weighting not in get_args(losses.MultitaskWeighting):
            choices = get_args(losses.MultitaskWeighting)
            raise TrainingError(f"multitask weighting {self.weighting!r} not in {choices}")

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
