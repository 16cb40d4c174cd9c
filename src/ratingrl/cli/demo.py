"""``ratingrl demo``: the main job end to end on embedded defaults (what ``make demo`` runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ratingrl.cli.common import ThreadsOpt, console, set_threads

__all__ = ["demo"]


def demo(
    out_dir: Annotated[Path, typer.Option(help="where results go")] = Path("demo_out"),
    ratings: int = 500,
    seed: int = 0,
    policy: Annotated[
        bool, typer.Option(help="also train a policy on a learned reward (about 3 more minutes)")
    ] = True,
    threads: ThreadsOpt = 1,
) -> None:
    """Ratings -> reward (HalfCheetah-v5: R4 vs RbRL) -> policy (Pendulum: SAC), with plots."""
    from ratingrl.experiments.demo import DemoConfig, run_demo

    set_threads(threads)
    console.rule("1. ratings -> reward: how well do learned rewards order unseen behaviour?")
    results = run_demo(DemoConfig(ratings=ratings, seed=seed, out_dir=str(out_dir)))
    table = Table(title=f"Learned reward vs true return on held-out segments ({ratings} ratings)")
    for column in ("method", "Kendall tau", "Spearman", "label accuracy", "train s"):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['kendall_tau']:.3f}",
            f"{r['spearman']:.3f}",
            f"{r['label_accuracy']:.3f}",
            f"{r['train_time_s']:.0f}",
        )
    console.print(table)
    console.print(f"plot: {out_dir / 'fidelity.png'}; dataset: {out_dir / 'rated.parquet'}")
    report = {"reward": results}
    if policy:
        from ratingrl.experiments.policy_demo import run_policy_demo

        console.rule("2. ratings -> reward -> policy: SAC on a reward learned from 100 ratings")
        report["policy"] = run_policy_demo(out_dir)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    console.print(f"all results: {out_dir / 'results.json'}")
