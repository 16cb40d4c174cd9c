"""The interface every reward method implements, and the registry that names methods.

What a method sees (:class:`DataInfo`, :class:`Batch`), the base class :class:`RewardMethod`,
``register``/``make_method`` and the spec syntax ``"r4[norm_penalty=0.05]"``. Import these from
:mod:`ratingrl.rewards.methods`, which re-exports them and registers the built-in methods: this
module alone knows no method names.

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
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar, get_args

import numpy as np
from torch import Tensor

from ratingrl.rewards.batching import item_batches
from ratingrl.rewards.nets import RewardEnsemble

if TYPE_CHECKING:
    from ratingrl.feedback.segments import PreferencePairs, RatedSegments

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
    dataset: RatedSegments | PreferencePairs | None = field(default=None, compare=False, repr=False)
    """The term's labelled data, rows aligned with ``labels``, for a method that needs more than
    the labels: who gave each one (a rater model), which segments were shown twice."""

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
    index: Tensor | None = None  # the labels' rows in ``data.labels`` (and ``data.dataset``)


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
    learns_from_repeats: ClassVar[bool] = False
    """Whether hidden repeats (a rater's second rating of a clip) inform the method, so a rating
    source should hand them over as labels; the others would only count a segment twice."""

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

    def selects_by_held_out_labels(self) -> bool:
        """Whether the trainer keeps the epoch with the best held-out label score and stops early
        on it (the default), or trains its whole budget and keeps the last model.

        A loss that models the teacher's noise need not trust a small split of equally noisy
        labels more than itself (see :mod:`ratingrl.rewards.robust`).
        """
        return True

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
    values = {key: _setting_value(name, key, known[key].default, v) for key, v in settings.items()}
    return cls(**values)


_BOOLEANS = {"true": True, "false": False}


def _setting_value(method: str, key: str, default: object, value: object) -> object:
    """``value`` checked against the type of the setting's default: a spec's ``true``/``false``
    become booleans (specs are text), a word where a number belongs is an error."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        if not isinstance(value, bool):
            raise TrainingError(
                f"method {method!r}: setting {key} takes true or false, got {value!r}"
            )
        return value
    if isinstance(default, int | float) and isinstance(value, str):
        raise TrainingError(f"method {method!r}: setting {key} takes a number, got {value!r}")
    return value


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
