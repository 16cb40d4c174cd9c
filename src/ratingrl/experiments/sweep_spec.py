"""A sweep as data: a TOML file of a base configuration, a grid of overrides and seeds.

    name = "walker"                      # default: the file's name
    kind = "policy"                      # policy (RunConfig trials) | fidelity (FidelityConfig)
    seeds = [0, 1, 2]                    # or a count: seeds = 3
    track = "sac300k"                    # optional: a track of ratingrl.experiments.tracks
    store = "runs/sweeps/walker"         # optional, from the current folder (--store wins)

    [resources]
    cpus_per_trial = 1                   # Ray reserves these per trial
    gpus_per_trial = 0

    [base]                               # fields every trial starts from
    total_steps = 300000

    [grid]                               # every combination of these lists ...
    method = ["oracle", "r4", "rbrl"]

    [[variants]]                         # ... crossed with each of these override sets
    budget = 100

A trial is one seed of one combination: ``base``, then the variant, then the grid point, then
the seed. With ``track`` the base starts from the track's overrides and the grid defaults to
the track's environments and its methods. The trials come seed-major, so every method's first
seed finishes before any second one: a stopped sweep can already be compared.

TOML (``tomllib``, in Python since 3.11) rather than YAML: one unambiguous syntax (YAML reads
``no`` as false and ``1e-6`` as a string), lists and tables map one to one onto the
configuration's tuples and dicts, and nothing to install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SpecError",
    "SweepSpec",
    "Trial",
    "load_spec",
    "spec_from_dict",
    "fidelity_config",
    "read_toml",
]

KINDS = ("policy", "fidelity")
FIDELITY_JOB = {"method": "r4", "ratings": 1000, "classes": 4, "noise": 0.0}
"""What one fidelity trial varies (a job of :mod:`ratingrl.experiments.fidelity`), defaults."""
_TOP_KEYS = {"name", "kind", "seeds", "track", "store", "resources", "base", "grid", "variants"}
_MAX_ID = 120


class SpecError(ValueError):
    """A sweep file that cannot run: the message names the key and the value."""


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: what it overrides, its seed and the full configuration it runs.

    ``trial_id`` is ``<sweep name>/<overrides and seed>``: one store holds several sweeps.

    ``config`` is JSON-ready (``RunConfig.to_dict()``, or a fidelity config and job), which is
    what a trial folder stores and what a resumed sweep compares against.
    """

    trial_id: str
    kind: str
    overrides: dict
    seed: int
    config: dict

    def meta(self, sweep: str) -> dict:
        """The trial's identity as stored in its ``trial.json``."""
        fidelity = self.kind == "fidelity"
        fields = self.config["job"] if fidelity else self.config
        env = self.config["fidelity"]["env_id"] if fidelity else self.config["env_id"]
        return {
            "trial_id": self.trial_id,
            "kind": self.kind,
            "sweep": sweep,
            "env_id": env,
            "method": fields["method"],
            "overrides": self.overrides,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring); :meth:`trials` lists its runs."""

    name: str
    kind: str = "policy"
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    variants: tuple[dict, ...] = ({},)
    seeds: tuple[int, ...] = (0,)
    store: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def trials(self) -> list[Trial]:
        """Every trial, seed-major, each checked (a typo fails here, not hours later)."""
        keys = list(self.grid)
        points = [dict(zip(keys, values, strict=True)) for values in _product(self.grid)]
        trials, seen = [], {}
        for seed in self.seeds:
            for variant in self.variants:
                for point in points:
                    both = sorted(set(variant) & set(point))
                    if both:
                        raise SpecError(f"{both} set in both [grid] and [[variants]]")
                    trial = self._trial({**variant, **point}, seed)
                    if trial.trial_id in seen:
                        raise SpecError(
                            f"two trials share the id {trial.trial_id!r} ({seen[trial.trial_id]} "
                            f"and {trial.overrides}): make their overrides differ"
                        )
                    seen[trial.trial_id] = trial.overrides
                    trials.append(trial)
        return trials

    def _trial(self, overrides: dict, seed: int) -> Trial:
        trial_id = f"{_slug(self.name)}/{make_trial_id(overrides, seed)}"
        fields = {**self.base, **overrides}
        try:
            if self.kind == "policy":
                config = _policy_config(fields, seed)
            else:
                config = _fidelity_trial_config(fields, seed)
        except (ValueError, TypeError) as err:
            raise SpecError(f"trial {trial_id}: {err}") from None
        return Trial(trial_id, self.kind, _plain(overrides), seed, config)


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep file (TOML); ``name`` defaults to the file's name without ``.toml``."""
    path = Path(path)
    return spec_from_dict(read_toml(path, "sweep file"), default_name=path.stem)


def read_toml(path: str | Path, what: str) -> dict:
    """A TOML file's tables; a one-line :class:`SpecError` naming the file otherwise.
    (``tomllib`` from Python 3.11, its backport ``tomli`` before.)"""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise SpecError(f"cannot read the {what} {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path} is not valid TOML: {err}") from None


def spec_from_dict(data: Mapping[str, Any], default_name: str = "sweep") -> SweepSpec:
    """A spec from its parsed TOML tables, with every key checked."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown keys {unknown} in the sweep file; known: {sorted(_TOP_KEYS)}")
    kind = data.get("kind", "policy")
    if kind not in KINDS:
        raise SpecError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    base, grid = dict(data.get("base", {})), dict(data.get("grid", {}))
    if data.get("track") is not None:
        if kind != "policy":
            raise SpecError(f"track applies to policy sweeps, not kind={kind!r}")
        base, grid = _from_track(str(data["track"]), base, grid)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid.{key} must be a non-empty list, got {values!r}")
    variants = data.get("variants", [{}])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise SpecError(f"variants must be a list of tables ([[variants]]), got {variants!r}")
    for where in (base, grid, *variants):
        if "seed" in where:
            raise SpecError("set seeds with the top-level `seeds`, not as a field")
    resources = dict(data.get("resources", {}))
    extra = sorted(set(resources) - {"cpus_per_trial", "gpus_per_trial"})
    if extra:
        known = "cpus_per_trial, gpus_per_trial"
        raise SpecError(f"unknown keys {extra} in [resources]; known: {known}")
    cpus, gpus = resources.get("cpus_per_trial", 1), resources.get("gpus_per_trial", 0)
    if not (isinstance(cpus, int | float) and cpus > 0):
        raise SpecError(f"resources.cpus_per_trial must be > 0, got {cpus!r}")
    if not (isinstance(gpus, int | float) and gpus >= 0):
        raise SpecError(f"resources.gpus_per_trial must be >= 0, got {gpus!r}")
    store = data.get("store")
    return SweepSpec(
        name=str(data.get("name", default_name)),
        kind=kind,
        base=base,
        grid=grid,
        variants=tuple(dict(v) for v in variants) or ({},),
        seeds=_seeds(data.get("seeds", [0])),
        store=None if store is None else str(store),
        cpus_per_trial=float(cpus),
        gpus_per_trial=float(gpus),
    )


def _from_track(name: str, base: dict, grid: dict) -> tuple[dict, dict]:
    """A track's overrides under ``base``; its environments and methods as the default grid."""
    from ratingrl.experiments.tracks import METHODS, TRACKS

    if name not in TRACKS:
        raise SpecError(f"unknown track {name!r}; tracks: {sorted(TRACKS)}")
    track = TRACKS[name]
    defaults = {"env_id": list(track.envs), "method": list(METHODS)}
    grid = {**{k: v for k, v in defaults.items() if k not in base}, **grid}
    return {**track.overrides, **base}, grid


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) for s in value):
        if len(set(value)) != len(value):
            raise SpecError(f"seeds repeat: {value}")
        return tuple(value)
    raise SpecError(f"seeds must be a count >= 1 or a list of whole numbers, got {value!r}")


def _product(grid: dict) -> list[tuple]:
    return list(itertools.product(*grid.values())) if grid else [()]


# -- one trial's configuration ---------------------------------------------------------------
def _policy_config(fields: dict, seed: int) -> dict:
    from ratingrl.rl.config import RunConfig

    config = RunConfig().replace(**fields, seed=seed)
    config.validate()
    return config.to_dict()


def _fidelity_trial_config(fields: dict, seed: int) -> dict:
    job = {k: fields.get(k, v) for k, v in FIDELITY_JOB.items()}
    config = fidelity_config({k: v for k, v in fields.items() if k not in FIDELITY_JOB}, job)
    return _plain({"fidelity": config.to_dict(), "job": {**job, "seed": seed}})


def fidelity_config(fields: Mapping[str, Any], job: Mapping[str, Any]):
    """The :class:`~ratingrl.experiments.fidelity.FidelityConfig` of one fidelity trial.

    ``fields`` are the config's own fields (``trainer`` and ``pool`` as nested tables, e.g.
    ``[base.trainer.net] hidden = [64, 64]``); ``job`` is the one condition the trial runs
    (``method``, ``ratings``, ``classes``, ``noise``), so the sweep, not the config, holds the
    product. The pool follows ``env_id`` unless ``pool`` says otherwise.
    """
    from ratingrl.experiments.fidelity import FidelityConfig
    from ratingrl.feedback.pool import PoolSpec

    fields = dict(fields)
    reserved = sorted({"methods", "seeds", "workers"} & set(fields))
    if reserved:
        raise SpecError(f"{reserved}: a fidelity sweep sets these per trial (method, seeds)")
    trainer = _nested_replace(FidelityConfig().trainer, fields.pop("trainer", {}))
    env_id = fields.get("env_id", FidelityConfig.env_id)
    pool = fields.pop("pool", None)
    pool = None if pool is None else _nested_replace(PoolSpec(env_id), pool)
    return FidelityConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()},
        methods=(str(job["method"]),),
        ratings=(int(job["ratings"]),),
        classes=(int(job["classes"]),),
        noise=(float(job["noise"]),),
        seeds=1,
        workers=1,
        trainer=trainer,
        pool=pool,
    )


def _nested_replace(obj: Any, changes: Mapping[str, Any]) -> Any:
    """``dataclasses.replace`` that descends into nested dataclasses given as tables."""
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise SpecError(f"unknown fields {unknown} of {type(obj).__name__}; known: {sorted(names)}")
    new = {}
    for key, value in changes.items():
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = _nested_replace(current, value)
        new[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(obj, **new)


# -- trial ids -------------------------------------------------------------------------------
def make_trial_id(overrides: Mapping[str, Any], seed: int) -> str:
    """``env_id=dmc_walker-walk,method=r4,seed=0``: a folder name that says what the trial is.

    Ids longer than 120 characters keep their start and end with a hash of the whole.
    """
    parts = [f"{key}={_slug(value)}" for key, value in overrides.items()] + [f"seed={seed}"]
    text = ",".join(parts)
    if len(text) > _MAX_ID:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        text = f"{text[: _MAX_ID - 11]}~{digest}"
    return text


def _slug(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "-".join(_slug(v) for v in value)
    if isinstance(value, dict):
        return "(" + ";".join(f"{k}={_slug(v)}" for k, v in value.items()) + ")"
    return re.sub(r"[^A-Za-z0-9_.=\-\[\]]", "_", str(value))


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so stored and planned configs compare."""
    return json.loads(json.dumps(value))
