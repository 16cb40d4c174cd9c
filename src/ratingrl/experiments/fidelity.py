"""Reward-fidelity benchmark: how well does each method's learned reward order unseen behaviour?

Protocol (one run = method x ratings N x classes K x noise P x seed):

1. A pool of segments from behaviour of every quality (see ``ratingrl.feedback.pool``) is split
   by episode into training and held-out parts (no episode in both).
2. A simulated teacher rates N training segments: K quantile bins over the training part's true
   returns, then label noise: uniform relabelling with probability P (default) or R4's swaps of
   P*N pairs of adjacent-class labels (``noise_model="adjacent"``). A method that learns from
   pairs (``bt``) instead gets N pairs from the oracle teacher, whose answer is replaced by a
   coin flip with probability P (the same "random answer" noise).
3. The method trains a reward ensemble (shared trainer, 10% validation split for selection).
4. On held-out segments: Kendall tau and Spearman between the predicted and true segment
   returns, and label accuracy (the held-out segments' clean ratings recovered by cutting the
   predicted order at the true class proportions).

Within a seed all rating methods see the same segments and the same labels. Runs are spread
over worker processes (one thread each), which on a 2-core machine is faster than one process
with two threads for nets this small. Methods registered in the user's own modules are named
like the built-in ones once ``plugins`` lists those modules (every worker imports them too).
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from pathlib import Path

import numpy as np

from ratingrl.experiments.epic import EpicConfig, score_epic
from ratingrl.experiments.fidelity_pool import RequestError, check_requests, split_for_seed
from ratingrl.feedback.io import atomic_write_bytes, load_segments
from ratingrl.feedback.pool import PoolSpec, cached_pool, pool_path
from ratingrl.feedback.segments import PreferencePairs, SegmentSet
from ratingrl.feedback.teachers import (
    AdjacentSwap,
    Bins,
    PreferenceTeacher,
    RatingTeacher,
    UniformRelabel,
)
from ratingrl.progress import progress_bar
from ratingrl.rewards.methods import (
    RewardMethod,
    TrainingError,
    load_plugins,
    make_method,
    parse_method_spec,
)
from ratingrl.rewards.metrics import kendall_tau, pair_accuracy, quantile_label_accuracy, spearman
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, train_reward_model

__all__ = [
    "FidelityConfig",
    "RequestError",
    "check_requests",
    "run_fidelity",
    "summarise",
    "default_pool_spec",
]

RATING_METRICS = ("kendall_tau", "spearman", "label_accuracy")
NOISE_MODELS = {"uniform": UniformRelabel, "adjacent": AdjacentSwap}


def default_pool_spec(env_id: str) -> PoolSpec:
    """The pool every fidelity benchmark of ``env_id`` uses unless told otherwise."""
    return PoolSpec(env_id)


@dataclass(frozen=True)
class FidelityConfig:
    """One benchmark sweep: the product of ``ratings`` x ``classes`` x ``noise`` x seeds."""

    env_id: str = "HalfCheetah-v5"
    methods: tuple[str, ...] = field(
        default=("r4", "rbrl", "multitask", "bt", "regression"),
        metadata={"help": "method names, or variants such as r4[norm_penalty=0.05]"},
    )
    ratings: tuple[int, ...] = (1000,)
    classes: tuple[int, ...] = (4,)
    noise: tuple[float, ...] = (0.0,)
    seeds: int = 3
    noise_model: str = field(
        default="uniform",
        metadata={"help": "uniform: relabel with prob p; adjacent: R4's swaps of p*N pairs"},
    )
    test_fraction: float = field(default=0.3, metadata={"help": "episodes held out for scoring"})
    max_test_segments: int = 2000
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            epochs=60,
            batch_size=64,
            patience=10,
            net=RewardNetConfig(hidden=(64, 64), ensemble_size=3),
        )
    )
    r4_groups_per_batch: int = field(
        default=16, metadata={"help": "R4 groups per batch (x K segments; 64 in the paper)"}
    )
    pool: PoolSpec | None = None
    workers: int = 2
    cache_dir: str | None = None
    plugins: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "modules to import first (dotted names or .py paths), so that the methods "
            "they register can be named in methods"
        },
    )
    epic: EpicConfig | None = field(
        default_factory=EpicConfig,
        metadata={"help": "EPIC distance to the true reward beside tau (None: not computed)"},
    )

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods is empty")
        object.__setattr__(self, "plugins", tuple(self.plugins))
        for spec in self.methods:
            self.method(spec)  # raises a clear error for an unknown method or setting
        if any(n < 10 for n in self.ratings):
            raise ValueError(f"ratings must each be >= 10, got {self.ratings}")
        if any(k < 2 for k in self.classes):
            raise ValueError(f"classes must each be >= 2, got {self.classes}")
        if any(not 0 <= p <= 1 for p in self.noise):
            raise ValueError(f"noise must each be in [0, 1], got {self.noise}")
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(f"noise_model {self.noise_model!r} not in {sorted(NOISE_MODELS)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if isinstance(self.epic, Mapping):  # a sweep's [base.epic] table
            object.__setattr__(self, "epic", EpicConfig.from_dict(self.epic))
        if self.pool is None:
            object.__setattr__(self, "pool", default_pool_spec(self.env_id))
        elif self.pool.env_id != self.env_id:
            raise ValueError(f"pool is for {self.pool.env_id!r}, not {self.env_id!r}")

    def to_dict(self) -> dict:
        """JSON-able fields; the pool's as :meth:`PoolSpec.to_dict` gives them (unset later
        fields left out), so configurations stored before those fields still compare equal."""
        assert self.pool is not None
        data = {**asdict(self), "pool": self.pool.to_dict()}
        if self.epic == EpicConfig():  # a later field, likewise left out unless changed
            del data["epic"]
        return data

    def method(self, spec: str) -> RewardMethod:
        """The method a spec names (R4 gets this benchmark's groups per batch).

        Loads ``plugins`` first (once per process), so a spec may name a user's method in any
        process that holds this config, a spawned worker included.
        """
        try:
            load_plugins(self.plugins)
            name, overrides = parse_method_spec(spec)
            if name == "r4":
                overrides = {"groups_per_batch": self.r4_groups_per_batch, **overrides}
            return make_method(name, **overrides)
        except TrainingError as err:
            raise ValueError(str(err)) from None


@dataclass(frozen=True)
class _Job:
    method: str
    ratings: int
    classes: int
    noise: float
    seed: int


# -- one run ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _load_pool(path: str) -> SegmentSet:
    return load_segments(path)[0]


def _worker_init(plugins: Sequence[str] = ()) -> None:
    """One thread per worker; the user's method modules imported, so their names resolve."""
    import torch

    torch.set_num_threads(1)
    load_plugins(plugins)


def _pairs(segments: SegmentSet, train: np.ndarray, n: int, noise: float, rng) -> PreferencePairs:
    first = segments.subset(rng.choice(train, n))
    second = segments.subset(rng.choice(train, n))
    teacher = PreferenceTeacher(mistake=noise / 2)
    labels, _ = teacher.label(first, second, rng)
    return PreferencePairs(first, second, labels, teacher.to_dict())


def run_one(config: FidelityConfig, pool_file: str, job: _Job) -> dict:
    """Train one method on one labelled sample and score it on held-out segments."""
    segments = _load_pool(pool_file)
    train, test = split_for_seed(config, segments, job.seed)
    method = config.method(job.method)
    is_pairs = method.data_kind == "pairs"
    if job.ratings > len(train) and not is_pairs:
        raise RequestError(
            "ratings", job.ratings, f"the pool has {len(train)} training segments (seed {job.seed})"
        )
    bins = Bins.quantile(job.classes, segments.true_returns[train])
    noise = NOISE_MODELS[config.noise_model](job.noise)
    teacher = RatingTeacher(bins, (noise,) if job.noise else ())
    label_rng = np.random.default_rng([job.seed, job.ratings, job.classes, round(job.noise * 1e6)])
    if is_pairs:
        data = _pairs(segments, train, job.ratings, job.noise, label_rng)
    else:
        chosen = np.sort(label_rng.choice(train, job.ratings, replace=False))
        data = teacher.rate_dataset(segments.subset(chosen), label_rng)
    start = time.perf_counter()
    result = train_reward_model(data, method, replace(config.trainer, seed=job.seed))
    held_out = segments.subset(test)
    pred = result.model.predict_returns(held_out.obs, held_out.acts).mean(0)
    truth = held_out.true_returns
    row = {
        **asdict(job),
        "kendall_tau": kendall_tau(pred, truth),
        "spearman": spearman(pred, truth),
        "label_accuracy": quantile_label_accuracy(pred, bins.classify(truth), job.classes),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "wall_time_s": time.perf_counter() - start,
    }
    if is_pairs:
        rng = np.random.default_rng([job.seed, 1])
        a, b = rng.choice(len(test), (2, 2000))
        row["pair_accuracy"] = pair_accuracy(pred[a], pred[b], (truth[b] > truth[a]).astype(float))
    if config.epic is not None:  # its own random stream: the figures above are unchanged
        reward_fn = result.model.as_reward_fn()
        row.update(
            score_epic(config.epic, config.env_id, pool_file, segments, test, job.seed, reward_fn)
        )
    return row


# -- the sweep -------------------------------------------------------------------------------
def _jobs(config: FidelityConfig) -> list[_Job]:
    grid = product(
        range(config.seeds), config.ratings, config.classes, config.noise, config.methods
    )
    return [_Job(m, n, k, p, s) for s, n, k, p, m in grid]


def _mean_std(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr)), "n": int(arr.size)}


def summarise(rows: list[dict], methods: Sequence[str]) -> list[dict]:
    """Group run rows by condition and method: mean and std over seeds of every metric."""
    conditions: dict[tuple, dict] = {}
    for row in rows:
        key = (row["ratings"], row["classes"], row["noise"])
        conditions.setdefault(key, {})
        conditions[key].setdefault(row["method"], []).append(row)
    out = []
    for (n, k, p), by_method in sorted(conditions.items()):
        results = {}
        for method in methods:
            runs = by_method.get(method, [])
            if not runs:
                continue
            entry = {m: _mean_std([r[m] for r in runs]) for m in RATING_METRICS}
            if "pair_accuracy" in runs[0]:
                entry["pair_accuracy"] = _mean_std([r["pair_accuracy"] for r in runs])
            if "epic" in runs[0]:
                entry["epic"] = _mean_std([r["epic"] for r in runs])
                entry["epic_estimator"] = runs[0].get("epic_estimator")
            entry["wall_time_s"] = float(np.mean([r["wall_time_s"] for r in runs]))
            results[method] = entry
        out.append({"ratings": n, "classes": k, "noise": p, "results": results})
    return out


def ensure_pool(config: FidelityConfig, progress: bool = True) -> Path:
    """Build (or find) the pool on disk and return its path, so workers only read it."""
    from ratingrl.rl.behaviour import build_pool

    assert config.pool is not None
    cached_pool(config.pool, functools.partial(build_pool, progress=progress), config.cache_dir)
    return pool_path(config.pool, config.cache_dir)


def run_fidelity(
    config: FidelityConfig,
    out: str | Path | None = None,
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    """Run the sweep, write ``out`` (JSON) when given, and return the report.

    Raises :class:`RequestError` (before any run) when the pool cannot serve a request, and
    :class:`~ratingrl.feedback.segments.FeedbackError` when a level of a new pool falls short.
    """
    started = time.perf_counter()
    pool_file = str(ensure_pool(config, progress))
    check_requests(config, _load_pool(pool_file), range(config.seeds))
    jobs = _jobs(config)
    rows: list[dict] = []
    with progress_bar(progress) as bar:
        task = bar.add_task(f"fidelity {config.env_id}", total=len(jobs))

        def done(row: dict) -> None:
            rows.append(row)
            bar.advance(task)
            bar.update(
                task,
                status=f"{row['method']} N={row['ratings']} K={row['classes']} "
                f"p={row['noise']:g}: tau {row['kendall_tau']:.3f}",
            )
            if on_row is not None:
                on_row(row)

        if config.workers <= 1:
            _worker_init(config.plugins)
            for job in jobs:
                done(run_one(config, pool_file, job))
        else:
            context = mp.get_context("spawn")
            executor = ProcessPoolExecutor(
                config.workers, context, initializer=_worker_init, initargs=(config.plugins,)
            )
            with executor as ex:
                futures = [ex.submit(run_one, config, pool_file, job) for job in jobs]
                for future in as_completed(futures):
                    done(future.result())
    conditions = summarise(rows, config.methods)
    report = {
        "config": config.to_dict(),
        "pool_file": pool_file,
        "conditions": conditions,
        "runs": rows,
        "epic": None if config.epic is None else asdict(config.epic),
        "wall_time_s": time.perf_counter() - started,
    }
    if len(conditions) == 1:
        report["results"] = conditions[0]["results"]
    if out is not None:
        atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    return report
