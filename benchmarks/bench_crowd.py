"""Crowd benchmark: ratings from many human-like simulated raters, pooled naively vs modelled.

Run from the repository root (one process, one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_crowd.py \
        --out benchmarks/results/crowd_HalfCheetah-v5.json

Protocol (the fidelity benchmark's, ``ratingrl.experiments.fidelity``, with a crowd for the
teacher): the cached pool of the environment is split by episode (30% of episodes held out, at
most 2,000 held-out segments); a crowd of R raters is drawn (``feedback.crowd.draw_crowd``:
class counts as in R4's human study, biased and drifting boundaries, noise; the last one or two
careless) with boundaries relative to the training segments' returns; it rates ``ratings -
repeats`` training segments once each and shows ``repeats`` of them again to the same rater
later in their session, so every method gets ``ratings`` labels. Methods:

- ``raters``: the rater model (``rewards.raters``) on the ratings as given;
- naive pooling, two ways: ``naive_r4``/``naive_rbrl``, R4 and RbRL on the ratings mapped to
  4 classes by each rater's fraction (``feedback.crowd.rescale_by_rater``); ``r4``/``rbrl`` on
  the ratings as stored (each rater's class placed by its position on the finest rater's
  scale, ``feedback.crowd.to_common``). Both respect each rater's number of classes, neither
  where they put their boundaries nor how careful they are;
- ``oracle_r4`` (reference): R4 on the same segments rated by one clean teacher (4 quantile
  classes), the fidelity benchmark's clean condition: what the crowd costs.

Score: Kendall tau between predicted and true held-out segment returns. The difference
``raters - best naive`` (the naive pooling with the highest mean) is paired by seed, with a
bootstrap 95% interval of its mean over seeds. Within a seed every method sees the same
segments and the crowd the same labels. The trainer is the fidelity benchmark's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ratingrl.experiments.fidelity import FidelityConfig, ensure_pool
from ratingrl.experiments.stats import mean_interval
from ratingrl.feedback.crowd import draw_crowd, rescale_by_rater
from ratingrl.feedback.io import atomic_write_bytes, load_segments
from ratingrl.feedback.pool import split_by_episode
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.rewards.methods import split_method_specs
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.training import train_reward_model

NAIVE = ("naive_r4", "naive_rbrl", "r4", "rbrl")
METHODS = ("raters", "raters[repeat_weights=false]", *NAIVE, "oracle_r4")
CARELESS = {5: 1, 20: 2}


def _crowd_data(segments, train, raters: int, args, seed: int):
    """The crowd, its ratings of ``args.ratings`` labels (repeats included) and the segments'
    indices rated (each once)."""
    rng = np.random.default_rng([seed, raters, 7])
    careless = CARELESS.get(raters, max(1, raters // 10))
    crowd = draw_crowd(raters, segments.true_returns[train], rng, n_careless=careless)
    chosen = np.sort(rng.choice(train, args.ratings - args.repeats, replace=False))
    data = crowd.rate(segments.subset(chosen), rng, repeats=args.repeats)
    return crowd, data, chosen


def _data_and_spec(method: str) -> tuple[str, str]:
    """Which labels a method name trains on, and the method spec: ``naive_<spec>`` on the
    ratings mapped to 4 classes, ``oracle_<spec>`` on one clean teacher's, anything else
    (``raters``, ``raters[repeat_weights=false]``, ``rbrl``) on the crowd's ratings as given."""
    for kind in ("naive", "oracle"):
        if method.startswith(kind + "_"):
            return kind, method[len(kind) + 1 :]
    return "crowd", method


def _train(spec: str, data, config: FidelityConfig, seed: int):
    trainer = replace(config.trainer, seed=seed)
    with warnings.catch_warnings():  # the common scale's unused classes; expected here
        warnings.filterwarnings("ignore", message="rating classes .* have no labels")
        return train_reward_model(data, config.method(spec), trainer)


def run_seed(segments, raters: int, seed: int, args, config: FidelityConfig) -> list[dict]:
    """Every method on one crowd and seed: rows with the held-out Kendall tau."""
    split_rng = np.random.default_rng([seed, 0])
    train, test = split_by_episode(segments, config.test_fraction, split_rng)
    if len(test) > config.max_test_segments:
        test = np.sort(split_rng.choice(test, config.max_test_segments, replace=False))
    crowd, data, chosen = _crowd_data(segments, train, raters, args, seed)
    held_out = segments.subset(test)
    teacher = RatingTeacher(Bins.quantile(4, segments.true_returns[train]))
    labelled = {
        "crowd": data,
        "naive": rescale_by_rater(data, 4),
        "oracle": teacher.rate_dataset(segments.subset(chosen), np.random.default_rng(0)),
    }
    rows = []
    for method in args.methods:
        start = time.perf_counter()
        kind, spec = _data_and_spec(method)
        result = _train(spec, labelled[kind], config, seed)
        pred = result.model.predict_returns(held_out.obs, held_out.acts).mean(0)
        row = {
            "raters": raters,
            "seed": seed,
            "method": method,
            "kendall_tau": kendall_tau(pred, held_out.true_returns),
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "wall_time_s": time.perf_counter() - start,
        }
        if kind == "crowd" and "rater_weights" in result.extra:
            names = list(dict.fromkeys(data.rater))
            careless = {r.name for r in crowd.raters if r.careless}
            row["rater_weights"] = dict(zip(names, result.extra["rater_weights"], strict=True))
            row["careless"] = sorted(careless)
        rows.append(row)
        print(f"R={raters} seed={seed} {method}: tau {row['kendall_tau']:.3f}", flush=True)
    crowd_row = {"raters": raters, "seed": seed, "method": "_crowd"}
    crowd_row["classes"] = [r.n_classes for r in crowd.raters]
    rows.append(crowd_row)
    return rows


def summarise(rows: list[dict], methods, crowd_sizes) -> list[dict]:
    """Per crowd size: each method's mean and sd over seeds, and raters - best naive (paired by
    seed) with a bootstrap 95% interval."""
    out = []
    for raters in crowd_sizes:
        mine = [r for r in rows if r["raters"] == raters and r["method"] in methods]
        taus = {m: {r["seed"]: r["kendall_tau"] for r in mine if r["method"] == m} for m in methods}
        entry = {"raters": raters, "careless": CARELESS.get(raters), "results": {}}
        for m, by_seed in taus.items():
            values = np.array(list(by_seed.values()))
            entry["results"][m] = {"mean": values.mean(), "std": values.std(), "n": len(values)}
        naive = [m for m in NAIVE if m in taus]
        if "raters" in taus and naive:
            best = max(naive, key=lambda m: entry["results"][m]["mean"])
            seeds = sorted(set(taus["raters"]) & set(taus[best]))
            diffs = [taus["raters"][s] - taus[best][s] for s in seeds]
            ci = mean_interval({"diff": diffs}, seed=0)
            entry["difference"] = {
                "versus": best,
                "mean": ci.point,
                "low": ci.low,
                "high": ci.high,
                "per_seed": diffs,
                "raters_better_in": int(sum(d > 0 for d in diffs)),
            }
        classes = [c for r in rows if r["raters"] == raters and r["method"] == "_crowd"
                   for c in r["classes"]]  # fmt: skip
        entry["rater_classes"] = {"mean": float(np.mean(classes)), "std": float(np.std(classes))}
        out.append(entry)
    return out


def _machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--raters", default="5,20", help="crowd sizes, comma-separated")
    parser.add_argument("--ratings", type=int, default=1000, help="labels, repeats included")
    parser.add_argument("--repeats", type=int, default=100, help="hidden repeats among them")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.methods = split_method_specs(args.methods)
    torch.set_num_threads(1)
    try:
        config = FidelityConfig(env_id=args.env, workers=1)
        for method in args.methods:
            config.method(_data_and_spec(method)[1])
    except ValueError as err:
        parser.error(f"--methods: {err}")
    segments = load_segments(ensure_pool(config, progress=False))[0]
    crowd_sizes = [int(x) for x in args.raters.split(",")]
    started, rows = time.perf_counter(), []
    for raters in crowd_sizes:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows += run_seed(segments, raters, seed, args, config)
    report = {
        "benchmark": "crowd",
        "env_id": args.env,
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "trainer": asdict(config.trainer),
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "summary": summarise(rows, args.methods, crowd_sizes),
        "runs": rows,
        "wall_time_s": time.perf_counter() - started,
    }
    text = json.dumps(report, indent=2, default=float)
    if args.out is not None:
        atomic_write_bytes(args.out, text.encode())
    for entry in report["summary"]:
        print(json.dumps(entry, default=float))


if __name__ == "__main__":
    main()
