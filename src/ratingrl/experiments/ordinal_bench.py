"""CPU benchmark of ranking-aware GRPO (RARL) against supervised ordinal baselines.

Protocol (per seed; every method sees the same images in the same order):

1. Data: a training pool and a held-out pool of procedural ``count`` and ``size`` images
   (:mod:`ratingrl.ordinal.data`), generated from the seed. Nothing is downloaded.
2. Supervised baselines train a fresh CNN for ``warm_steps + steps`` minibatches:
   ``cross_entropy`` (categorical head), ``mse`` (scalar head), ``cumulative_logit``.
3. GRPO methods start from the ``cross_entropy`` model after its first ``warm_steps`` steps (the
   *warm start*: RARL also applies GRPO to a pretrained model), then run ``steps`` GRPO steps on
   queries of 1, 2, 4 or 8 images with the same number of images per step as the baselines. The
   frozen warm start is the KL reference. ``grpo_regression`` and ``grpo_ranking`` use one reward;
   ``grpo_joint`` uses RARL's two-stage schedule (regression reward for the first
   ``two_stage_fraction`` of the steps, then the joint reward); ``grpo_joint_rmo`` adds response
   mutation. The CNN's answers are always well formed, so the format term is a constant there.
4. Held-out metrics with greedy answers: MAE, exact accuracy, Kendall tau-b and Spearman per task
   over all held-out images (averaged over the two tasks), and the mean tau inside held-out
   queries of 2, 4 and 8 images.

Run it with ``ratingrl bench ordinal --out results.json`` (the command is
:func:`ratingrl.cli.bench.bench_ordinal`) or :func:`run_ordinal_benchmark`; the
configuration is :class:`~ratingrl.experiments.ordinal_config.OrdinalBenchConfig`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ratingrl.experiments.ordinal_config import (
    GRPO_METHODS,
    METHODS,
    SUPERVISED,
    TABLE_METRICS,
    WARM,
    OrdinalBenchConfig,
)
from ratingrl.ordinal.baselines import SupervisedConfig, predict_pool, train_supervised
from ratingrl.ordinal.data import (
    OrdinalImages,
    make_images,
    partition_queries,
    sample_queries,
)
from ratingrl.ordinal.grpo import (
    GRPOBatch,
    GRPOConfig,
    GRPOStats,
    TwoStageSchedule,
    array_reward_fn,
    train_grpo,
)
from ratingrl.ordinal.metrics import ordinal_metrics
from ratingrl.ordinal.models import ImageQuery, ItemwisePolicy, OrdinalCNN
from ratingrl.ordinal.mutation import MutationConfig
from ratingrl.ordinal.rewards import (
    joint_scores,
    ranking_scores,
    regression_scores,
)
from ratingrl.progress import progress_bar

__all__ = [
    "METHODS",
    "OrdinalBenchConfig",
    "format_table",
    "plot_results",
    "run_ordinal_benchmark",
]

# --------------------------------------------------------------------------- one run


def _pools(cfg: OrdinalBenchConfig, seed: int) -> tuple[OrdinalImages, OrdinalImages]:
    """Training and held-out pools of one seed (independent random streams)."""
    task = cfg.task_config()
    train = make_images(cfg.train_per_task, np.random.default_rng([seed, 0]), task)
    test = make_images(cfg.test_per_task, np.random.default_rng([seed, 1]), task)
    return train, test


def _evaluate(cfg: OrdinalBenchConfig, seed: int, model: OrdinalCNN, test: OrdinalImages) -> dict:
    rng = np.random.default_rng([seed, 2])
    queries = {n: partition_queries(test, n, rng) for n in cfg.query_sizes if n >= 2}
    return ordinal_metrics(predict_pool(model, test), test.labels, test.tasks, queries)


def _supervised_config(cfg: OrdinalBenchConfig, steps: int) -> SupervisedConfig:
    return SupervisedConfig(steps=steps, batch_size=cfg.images_per_step, lr=cfg.supervised_lr)


def run_supervised(cfg: OrdinalBenchConfig, seed: int, method: str) -> dict[str, Any]:
    """Train one supervised baseline; ``cross_entropy`` also returns the warm start for GRPO.

    Two fixed minibatch streams (``warm_steps`` then ``steps``) make every baseline see the same
    images, and make the warm start exactly the cross-entropy model after ``warm_steps``.
    """
    train, test = _pools(cfg, seed)
    model = OrdinalCNN(
        num_tasks=2,
        num_values=cfg.num_values,
        head=SUPERVISED[method],
        image_size=cfg.image_size,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.supervised_lr)
    first = _supervised_config(cfg, cfg.warm_steps)
    train_supervised(model, train, first, np.random.default_rng([seed, 3]), optimizer)
    out: dict[str, Any] = {"seed": seed, "method": method}
    if method == "cross_entropy":
        out["warm_state"] = copy.deepcopy(model.state_dict())
        out["warm_metrics"] = _evaluate(cfg, seed, model, test)
    second = _supervised_config(cfg, cfg.steps)
    train_supervised(model, train, second, np.random.default_rng([seed, 4]), optimizer)
    out["metrics"] = _evaluate(cfg, seed, model, test)
    return out


def _reward_functions(cfg: OrdinalBenchConfig, targets: np.ndarray) -> dict[str, Any]:
    return {
        "regression": array_reward_fn(partial(regression_scores, delta=cfg.delta), targets),
        "ranking": array_reward_fn(ranking_scores, targets),
        "joint": array_reward_fn(
            partial(joint_scores, delta=cfg.delta, weights=cfg.weights()), targets
        ),
    }


def _batch_maker(cfg: OrdinalBenchConfig, seed: int, method: str, train: OrdinalImages):
    """``make_batch(step)`` for :func:`train_grpo`: random queries and the reward in force."""
    rng = np.random.default_rng([seed, 5])
    images, tasks = torch.from_numpy(train.images), torch.from_numpy(train.tasks)
    schedule = TwoStageSchedule(round(cfg.two_stage_fraction * cfg.steps))

    def make_batch(step: int) -> GRPOBatch:
        size = int(rng.choice(cfg.query_sizes))
        idx = sample_queries(train, cfg.images_per_step // size, size, rng)
        rewards = _reward_functions(cfg, train.labels[idx].astype(float))
        if method == "grpo_regression":
            fn = rewards["regression"]
        elif method == "grpo_ranking":
            fn = rewards["ranking"]
        else:
            fn = schedule.select(step, rewards["regression"], rewards["joint"])
        query = ImageQuery(images[idx], tasks[idx])
        return GRPOBatch(query, fn, torch.from_numpy(train.labels[idx]))

    return make_batch


def run_grpo(
    cfg: OrdinalBenchConfig, seed: int, method: str, warm_state: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Fine-tune the warm start with GRPO; returns held-out metrics and training diagnostics."""
    train, test = _pools(cfg, seed)

    def warm_model() -> OrdinalCNN:
        net = OrdinalCNN(num_tasks=2, num_values=cfg.num_values, image_size=cfg.image_size)
        net.load_state_dict(warm_state)
        return net

    model, reference = warm_model(), warm_model().requires_grad_(False)
    grpo = GRPOConfig(
        group_size=cfg.group_size,
        clip_eps=cfg.clip_eps,
        kl_beta=cfg.kl_beta,
        inner_updates=cfg.inner_updates,
    )
    mutation = None
    if method == "grpo_joint_rmo":
        mutation = MutationConfig(cfg.mutation_probability, cfg.mutation_replaced)
    history = train_grpo(
        ItemwisePolicy(model),
        ItemwisePolicy(reference),
        torch.optim.Adam(model.parameters(), lr=cfg.grpo_lr),
        _batch_maker(cfg, seed, method, train),
        cfg.steps,
        grpo,
        torch.Generator().manual_seed(seed),
        mutation,
    )
    return {
        "seed": seed,
        "method": method,
        "metrics": _evaluate(cfg, seed, model, test),
        "training": _summarise_history(history),
    }


def _summarise_history(history: list[GRPOStats]) -> dict[str, float]:
    """Means over all GRPO steps, and the reward over the last 10% of steps."""
    if not history:
        return {}
    tail = history[-max(1, len(history) // 10) :]
    return {
        "zero_variance_fraction": float(np.mean([s.zero_variance_fraction for s in history])),
        "mutated_fraction": float(np.mean([s.mutated_fraction for s in history])),
        "kl_final": float(np.mean([s.kl for s in tail])),
        "clip_fraction": float(np.mean([s.clip_fraction for s in history])),
        "reward_final": float(np.mean([s.reward_mean for s in tail])),
    }


# --------------------------------------------------------------------------- orchestration


def _init_worker(threads: int) -> None:
    """Pin torch threads in a worker process so parallel runs do not oversubscribe cores."""
    torch.set_num_threads(threads)


class _Inline:
    """An executor-like object running jobs immediately (``workers=1``, tests, debugging).

    Torch's thread count is set for the duration of each job and then restored: tiny CNNs run
    fastest on one thread, and far slower with several threads on a busy machine.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def submit(self, fn: Any, *args: Any) -> Future:
        fut: Future = Future()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            fut.set_result(fn(*args))
        finally:
            torch.set_num_threads(before)
        return fut

    def shutdown(self) -> None:
        pass


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = per_seed[0].keys()
    stats = {k: np.array([r[k] for r in per_seed], dtype=float) for k in keys}
    return {k: {"mean": float(v.mean()), "std": float(v.std())} for k, v in stats.items()}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            models = (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
            cpu = next(models)
    except (OSError, StopIteration):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def run_ordinal_benchmark(config: OrdinalBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run every method on every seed and return the result dictionary (see module docstring).

    ``results[method][metric] = {"mean", "std"}`` over seeds; ``warm_start`` is reported too
    whenever a GRPO method or ``cross_entropy`` runs, since it is the GRPO starting point.
    """
    start = time.perf_counter()
    methods = [m for m in METHODS if m in config.methods]
    grpo = [m for m in methods if m in GRPO_METHODS]
    supervised = [m for m in methods if m in SUPERVISED]
    if grpo and "cross_entropy" not in supervised:
        supervised.insert(0, "cross_entropy")  # the warm start comes from its first steps
    total = config.seeds * (len(supervised) + len(grpo))
    pool: Any
    if config.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            config.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(config.threads_per_worker,),
        )
    else:
        pool = _Inline(config.threads_per_worker)
    outputs: list[dict[str, Any]] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("ordinal runs", total=total)
        pending: list[Future] = []

        def done(fut: Future) -> None:
            out = fut.result()
            outputs.append(out)
            bar.update(task, advance=1, status=f"{out['method']} seed {out['seed']} done")

        try:
            # Cross-entropy first: its warm start unlocks the GRPO runs of the same seed.
            order = sorted(supervised, key=lambda m: m != "cross_entropy")
            for method in order:
                for seed in range(config.seeds):
                    pending.append(pool.submit(run_supervised, config, seed, method))
            while pending:
                fut = pending.pop(0)
                done(fut)
                out = outputs[-1]
                if out["method"] == "cross_entropy":
                    for method in grpo:
                        pending.append(
                            pool.submit(run_grpo, config, out["seed"], method, out["warm_state"])
                        )
        finally:
            pool.shutdown()
    return _collect(config, methods, outputs, time.perf_counter() - start)


def _collect(
    config: OrdinalBenchConfig, methods: list[str], outputs: list[dict[str, Any]], wall: float
) -> dict[str, Any]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for out in sorted(outputs, key=lambda o: o["seed"]):
        by_method.setdefault(out["method"], []).append(out)
    results, per_seed, training = {}, {}, {}
    ce_runs = by_method.get("cross_entropy", [])
    if any(m in GRPO_METHODS for m in methods) and ce_runs:
        per_seed[WARM] = [r["warm_metrics"] for r in ce_runs]
        results[WARM] = _aggregate(per_seed[WARM])
    for method in methods:
        runs = by_method[method]
        per_seed[method] = [r["metrics"] for r in runs]
        results[method] = _aggregate(per_seed[method])
        if "training" in runs[0]:
            training[method] = _aggregate([r["training"] for r in runs])
    return {
        "benchmark": "ordinal",
        "config": json.loads(json.dumps(asdict(config))),  # tuples -> lists, as on disk
        "methods": methods,
        "results": results,
        "per_seed": per_seed,
        "grpo_training": training,
        "wall_time_s": round(wall, 1),
        "machine": _machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- reporting


def format_table(result: dict[str, Any], metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """A Markdown table ``method | metric mean ± std ...`` of a benchmark result."""
    header = "| method | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    for method, values in result["results"].items():
        cells = [f"{values[m]['mean']:.3f} ± {values[m]['std']:.3f}" for m in metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(result: dict[str, Any], path: Path) -> Path:
    """Bar charts of MAE and Kendall tau (mean ± std over seeds), saved as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["results"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, ("mae", "kendall_tau", "query_tau"), strict=True):
        mean = [result["results"][n][metric]["mean"] for n in names]
        std = [result["results"][n][metric]["std"] for n in names]
        ax.bar(range(len(names)), mean, yerr=std, color="tab:blue", capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(metric)
        low = min(m - s for m, s in zip(mean, std, strict=True))
        if metric != "mae":
            ax.set_ylim(max(0.0, low - 0.01), None)
    fig.suptitle(f"ordinal benchmark, {result['config']['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
