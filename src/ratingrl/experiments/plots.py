"""Figures from benchmark reports (matplotlib, no screen needed).

``plot_fidelity`` draws Kendall tau against each swept factor (number of ratings, label noise,
number of classes), one row per report (environment), one line per method with the spread over
seeds as error bars. A factor is drawn only when the report swept it; the other factors are held
at their most common value, which is how one-factor-at-a-time sweeps are read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_fidelity", "load_reports", "plot_scatter", "save_figure"]

FACTORS = (("ratings", "ratings (N)"), ("noise", "label noise (p)"), ("classes", "classes (K)"))


def load_reports(paths: Sequence[str | Path]) -> list[dict]:
    """Read fidelity JSON files; reports of one environment are merged into one.

    Sweeps are often run one factor at a time into separate files; merging their conditions
    (a later file wins on a repeated condition) lets one figure show every factor.
    """
    by_env: dict[str, dict] = {}
    for report in _read_reports(paths):
        env = report["config"]["env_id"]
        merged = by_env.setdefault(env, {"config": report["config"], "conditions": {}})
        for condition in report["conditions"]:
            key = (condition["ratings"], condition["classes"], condition["noise"])
            merged["conditions"][key] = condition
    return [
        {"config": r["config"], "conditions": [r["conditions"][k] for k in sorted(r["conditions"])]}
        for r in by_env.values()
    ]


def _read_reports(paths: Sequence[str | Path]) -> list[dict]:
    reports = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not a readable benchmark report: {err}") from err
        if "conditions" not in report or "config" not in report:
            raise ValueError(f"{str(path)!r} is not a fidelity report (no 'conditions')")
        reports.append(report)
    return reports


def _series(conditions: list[dict], factor: str, metric: str) -> tuple[dict, dict[str, tuple]]:
    """``(held-fixed values, {method: (xs, means, stds)})`` for one factor."""
    others = [f for f, _ in FACTORS if f != factor]
    reference = {f: Counter(c[f] for c in conditions).most_common(1)[0][0] for f in others}
    chosen = sorted(
        (c for c in conditions if all(c[f] == reference[f] for f in others)),
        key=lambda c: c[factor],
    )
    lines: dict[str, tuple] = {}
    methods = {m for c in chosen for m in c["results"]}
    for method in sorted(methods):
        pts = [(c[factor], c["results"][method][metric]) for c in chosen if method in c["results"]]
        xs = [x for x, _ in pts]
        lines[method] = (xs, [v["mean"] for _, v in pts], [v["std"] for _, v in pts])
    return reference, lines


def plot_fidelity(reports: Sequence[dict], out: str | Path, metric: str = "kendall_tau") -> Path:
    """Tau (or another metric) against every swept factor; returns the written path."""
    rows = []
    for report in reports:
        conditions = report["conditions"]
        swept = [f for f, _ in FACTORS if len({c[f] for c in conditions}) > 1]
        rows.append((report, swept or ["ratings"]))
    n_cols = max(len(s) for _, s in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(4.2 * n_cols, 3.4 * len(rows)), squeeze=False
    )
    labels = dict(FACTORS)
    for r, (report, swept) in enumerate(rows):
        env = report["config"]["env_id"]
        for c in range(n_cols):
            ax = axes[r][c]
            if c >= len(swept):
                ax.axis("off")
                continue
            factor = swept[c]
            reference, lines = _series(report["conditions"], factor, metric)
            for method, (xs, ys, err) in lines.items():
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method)
            held = ", ".join(f"{k}={v:g}" for k, v in reference.items())
            ax.set_title(f"{env}\n{held}", fontsize=9)
            ax.set_xlabel(labels[factor])
            ax.set_ylabel(metric.replace("_", " "))
            if factor == "ratings":
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
        axes[r][0].legend(fontsize=8)
    return save_figure(fig, out)


def save_figure(fig: plt.Figure, out: str | Path) -> Path:
    """Lay out, write (creating the folder) and close ``fig``; returns the path."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_scatter(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, title: str = ""
) -> Path:
    """Predicted vs true segment return, one panel per method (``name -> (true, predicted)``)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for ax, (name, (truth, pred)) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(truth, pred, s=4, alpha=0.5)
        ax.set_title(name)
        ax.set_xlabel("true segment return")
        ax.set_ylabel("learned segment return")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)
