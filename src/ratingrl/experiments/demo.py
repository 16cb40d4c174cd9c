"""``make demo``: ratings -> reward on HalfCheetah-v5, end to end, in a few minutes.

1. collect (or reuse) a pool of segments from behaviour of every quality;
2. rate some of them with a 4-class simulated teacher and save the rated dataset;
3. train R4 and RbRL reward ensembles on the ratings;
4. score both on held-out segments (Kendall tau vs the true return), print a table and save a
   scatter plot of learned vs true segment returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ratingrl.experiments.fidelity import FidelityConfig, ensure_pool
from ratingrl.experiments.plots import plot_scatter
from ratingrl.feedback.io import load_segments, save_rated
from ratingrl.feedback.pool import split_by_episode
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.progress import progress_bar
from ratingrl.rewards.methods import make_method
from ratingrl.rewards.metrics import kendall_tau, quantile_label_accuracy, spearman
from ratingrl.rewards.training import train_reward_model

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    env_id: str = "HalfCheetah-v5"
    ratings: int = 500
    classes: int = 4
    methods: tuple[str, ...] = ("r4", "rbrl")
    seed: int = 0
    out_dir: str = "demo_out"


def run_demo(config: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the demo; returns ``{method: {"kendall_tau", "spearman", "label_accuracy", ...}}``."""
    config = config or DemoConfig()
    bench = FidelityConfig(env_id=config.env_id, methods=config.methods)
    pool_file = ensure_pool(bench, progress)
    segments, _ = load_segments(pool_file)
    rng = np.random.default_rng(config.seed)
    train, test = split_by_episode(segments, bench.test_fraction, rng)
    teacher = RatingTeacher(
        Bins.quantile(config.classes, segments.true_returns[train]),
        names=("bad", "poor", "good", "excellent") if config.classes == 4 else (),
    )
    chosen = np.sort(rng.choice(train, min(config.ratings, len(train)), replace=False))
    data = teacher.rate_dataset(segments.subset(chosen), rng)
    out = Path(config.out_dir)
    save_rated(data, out / "rated.parquet")
    held_out = segments.subset(test)
    truth = held_out.true_returns
    results, panels = {}, {}
    trainer = replace(bench.trainer, seed=config.seed)
    with progress_bar(progress) as bar:
        for name in config.methods:
            task = bar.add_task(f"train {name}", total=trainer.epochs)

            def on_epoch(row: dict, task: int = task) -> None:
                bar.update(task, advance=1, status=f"val tau {row['val_score']:.3f}")

            start = time.perf_counter()
            overrides = {"groups_per_batch": bench.r4_groups_per_batch} if name == "r4" else {}
            fit = train_reward_model(
                data, make_method(name, **overrides), trainer, on_epoch=on_epoch
            )
            bar.update(task, completed=trainer.epochs)
            pred = fit.model.predict_returns(held_out.obs, held_out.acts).mean(0)
            fit.model.save(out / f"reward_{name}.pt", method=name, env_id=config.env_id)
            results[name] = {
                "kendall_tau": kendall_tau(pred, truth),
                "spearman": spearman(pred, truth),
                "label_accuracy": quantile_label_accuracy(
                    pred, teacher.clean_ratings(held_out), config.classes
                ),
                "best_epoch": fit.best_epoch,
                "train_time_s": time.perf_counter() - start,
            }
            panels[f"{name}: tau {results[name]['kendall_tau']:.3f}"] = (truth, pred)
    plot_scatter(
        panels,
        out / "fidelity.png",
        f"{config.env_id}: {len(data)} ratings, {config.classes} classes, held-out segments",
    )
    return results
