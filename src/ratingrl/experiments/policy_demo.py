"""The demo's last step: ratings -> learned reward -> a policy, next to the oracle, in minutes.

Two SAC runs with the same budget on a fast task: one learns its reward online from a simulated
teacher's ratings (R4's loss, stratified queries), the other (the oracle) trains on the
environment's own reward. Both runs are ordinary ``ratingrl train`` runs in ``out_dir`` (config,
feedback, checkpoints, progress CSVs, TensorBoard, summary), so anything the demo shows can be
inspected, resumed or re-run from the command line. The figure is read back from the runs'
progress CSVs, as any user's own runs would be.

Sizes are chosen to finish in a few minutes on a shared 2-core machine: 64x64 policy and reward
nets, batch 64, one thread. They are far below any paper's protocol; the point is the pipeline,
not the number (see ``docs/benchmarks.md`` for measured recovery at larger budgets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ratingrl.config_fields import described as _f
from ratingrl.rl.config import RunConfig

__all__ = ["PolicyDemoConfig", "run_policy_demo", "plot_curves"]


@dataclass(frozen=True)
class PolicyDemoConfig:
    """What the policy demo trains; the defaults fit ~6 minutes on a shared 2-core machine."""

    env_id: str = _f("Pendulum-v1", "a task SAC solves in a few thousand steps")
    steps: int = _f(12_000, "env steps of each run (oracle and learned reward alike)")
    method: str = _f("r4", "reward method learning from the ratings")
    budget: int = _f(100, "ratings asked for, online")
    per_round: int = _f(20, "ratings per query round")
    every: int = _f(800, "env steps between query rounds (the first comes after as many)")
    horizon: int = _f(50, "segment length (env steps) people would rate")
    n_classes: int = _f(
        8,
        "rating levels of the simulated teacher; with 4, spinning and balancing segments share "
        "too few levels and SAC often learns to spin on the learned reward",
    )
    rating_range: tuple[float, float] | None = _f(
        (-500.0, 0.0),
        "segment-return range split into equal-width levels (None: dmc's 0..horizon); "
        "Pendulum: hanging ~ -10/step, spinning ~ -6, balanced ~ 0",
    )
    eval_every: int = _f(1000, "env steps between evaluations")
    eval_episodes: int = _f(5, "episodes per evaluation")
    seed: int = _f(0, "seed of both runs")

    @classmethod
    def quick(cls) -> PolicyDemoConfig:
        """A seconds-long version (a smoke test of the demo, not a measurement)."""
        return cls(
            env_id="Pendulum-v1",
            steps=700,
            budget=20,
            per_round=10,
            every=300,
            horizon=20,
            rating_range=(-320.0, 0.0),
            eval_every=350,
            eval_episodes=2,
        )

    def run_config(self, method: str) -> RunConfig:
        return RunConfig(
            env_id=self.env_id,
            algo="sac",
            method=method,
            mode="online",
            total_steps=self.steps,
            seed=self.seed,
            net_arch=(64, 64),
            batch_size=64,
            learning_starts=500,
            buffer_size=self.steps,
            reward_hidden=(64, 64),
            ensemble_size=3,
            reward_epochs=30,
            budget=self.budget,
            per_round=self.per_round,
            schedule="interval",
            schedule_unit=self.every,
            horizon=self.horizon,
            candidate_episodes=10,
            n_classes=self.n_classes,
            rating_range=self.rating_range,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            checkpoint_every=self.steps,
        )


def plot_curves(
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    out: str | Path,
    *,
    title: str = "true return",
    learned: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """True return vs env steps, one line per label (mean over its runs, thin lines per run).

    ``learned``: (steps, learned return) of one run, drawn in a second panel -- its scale is the
    reward model's, not the environment's, so it cannot share an axis with the true return.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ratingrl.experiments.plots import save_figure

    ncols = 2 if learned is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False)
    ax = axes[0, 0]
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        n = min(len(s) for s, _ in runs)
        if n == 0:
            continue
        for steps, values in runs:
            if len(runs) > 1:
                ax.plot(steps, values, color=color, alpha=0.25, lw=0.8)
        mean = np.mean([values[:n] for _, values in runs], axis=0)
        ax.plot(runs[0][0][:n], mean, color=color, lw=2, label=label, marker="o", ms=3)
    ax.set_xlabel("env steps")
    ax.set_ylabel("true return (evaluation)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if learned is not None:
        steps, values = learned
        ax2 = axes[0, 1]
        ok = np.isfinite(values)
        ax2.plot(steps[ok], values[ok], color="C1", marker="o", ms=3)
        ax2.set_xlabel("env steps")
        ax2.set_ylabel("learned return (reward model's units)")
        ax2.set_title("what the policy is paid (learned-reward run)", fontsize=10)
        ax2.grid(alpha=0.3)
    return save_figure(fig, out)


def run_policy_demo(
    out_dir: str | Path, progress: bool = True, config: PolicyDemoConfig | None = None
) -> dict:
    """Train the oracle and a learned-reward policy; print returns; save ``policy_curve.png``.

    Returns a dict with each run's final true (and learned) return, the policy recovery
    (learned-reward run's final true return relative to the oracle's, both shifted by the
    worse first evaluation, so that negative rewards such as Pendulum's make sense),
    the figure path and the wall time.
    """
    import torch
    from rich.console import Console

    from ratingrl.rl.evaluation import eval_curve
    from ratingrl.rl.train import train

    config = config or PolicyDemoConfig()
    console = Console()
    out_dir = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs: dict[str, dict] = {}
    try:
        for label, method in (("oracle", "oracle"), (config.method, config.method)):
            run_dir = out_dir / f"policy_{label}"
            summary = train(
                config.run_config(method),
                run_dir,
                overwrite=(run_dir / "config.json").exists(),
                progress=progress,
            )
            learned = summary["learned_return_final"]
            runs[label] = {
                "run_dir": str(run_dir),
                "true_return": summary["true_return_final"]["mean"],
                "learned_return": None if learned is None else learned["mean"],
                "labels": summary["labels_used"],
                "env_steps_per_s": summary["env_steps_per_s"],
                "curve": eval_curve(run_dir),
            }
            console.print(
                f"{label:>8}: true return {runs[label]['true_return']:8.1f}"
                + ("" if learned is None else f" | learned return {learned['mean']:8.2f}")
                + f" | {summary['labels_used']} ratings | {summary['env_steps']} env steps"
            )
    finally:
        torch.set_num_threads(threads)
    oracle, ours = runs["oracle"], runs[config.method]
    # the worse first evaluation, before either policy has learned much
    base = min(float(r["curve"]["true_return"][0]) for r in (oracle, ours))
    denominator = oracle["true_return"] - base
    recovery = (ours["true_return"] - base) / denominator if abs(denominator) > 1e-9 else None
    figure = plot_curves(
        {
            "oracle (env reward)": [(oracle["curve"]["env_steps"], oracle["curve"]["true_return"])],
            f"{config.method} (learned from {ours['labels']} ratings)": [
                (ours["curve"]["env_steps"], ours["curve"]["true_return"])
            ],
        },
        out_dir / "policy_curve.png",
        title=f"SAC on {config.env_id}: true return",
        learned=(ours["curve"]["env_steps"], ours["curve"]["learned_return"]),
    )
    wall = time.perf_counter() - started
    console.print(
        f"policy recovery {recovery if recovery is None else f'{recovery:.2f}'} "
        f"(gain over an untrained policy, relative to the oracle's); curve in {figure}; "
        f"{wall:.0f} s"
    )
    for run in runs.values():
        run["curve"] = {k: v.tolist() for k, v in run["curve"].items()}
    return {
        "env_id": config.env_id,
        "runs": runs,
        "policy_recovery": recovery,
        "figure": str(figure),
        "wall_time_s": wall,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
