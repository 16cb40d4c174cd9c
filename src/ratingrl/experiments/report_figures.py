"""The report's figures: learning curves with intervals, interval estimates, profiles.

Each takes what :mod:`ratingrl.experiments.stats` computed and writes one PNG (matplotlib,
no screen needed). ``order`` lists every arm of the report: an arm's colour is its place there,
so a method keeps its colour from one figure to the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ratingrl.experiments.plots import save_figure  # noqa: E402
from ratingrl.experiments.stats import CurveBand, Interval  # noqa: E402

__all__ = ["plot_curve_bands", "plot_intervals", "plot_profiles"]


def _colours(names: Sequence[str], order: Sequence[str] | None) -> dict[str, tuple]:
    cmap, order = plt.get_cmap("tab10"), list(order or names)
    order += [n for n in names if n not in order]
    return {name: cmap(order.index(name) % 10) for name in names}


def plot_curve_bands(
    bands: Mapping[str, CurveBand],
    out: str | Path,
    title: str,
    ylabel: str = "true return",
    order: Sequence[str] | None = None,
) -> Path:
    """One line per arm (the mean over seeds) in its 95% band, against env steps."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = _colours(list(bands), order)
    for name, band in bands.items():
        seeds = int(band.runs.max()) if len(band.runs) else 0
        ax.plot(band.steps, band.mean, color=colours[name], label=f"{name} ({seeds} seeds)")
        ax.fill_between(band.steps, band.low, band.high, color=colours[name], alpha=0.2, lw=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out)


def plot_intervals(
    intervals: Mapping[str, Interval],
    out: str | Path,
    title: str,
    xlabel: str,
    reference: float | None = 1.0,
    order: Sequence[str] | None = None,
) -> Path:
    """Point estimates with their 95% intervals, one row per arm; ``reference`` as a line."""
    names = [n for n, i in intervals.items() if np.isfinite(i.point)]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(names) + 1.4))
    colours = _colours(names, order)
    for y, name in enumerate(names):
        interval = intervals[name]
        ax.plot([interval.low, interval.high], [y, y], color=colours[name], lw=6, alpha=0.5)
        ax.plot([interval.point], [y], "o", color="black", ms=4)
    if reference is not None:
        ax.axvline(reference, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, out)


def plot_profiles(
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    out: str | Path,
    title: str,
    xlabel: str,
    order: Sequence[str] | None = None,
) -> Path:
    """Fraction of runs above each threshold (``name -> (taus, profile, low, high)``)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    colours = _colours(list(profiles), order)
    for name, (taus, profile, low, high) in profiles.items():
        ax.plot(taus, profile, color=colours[name], label=name)
        ax.fill_between(taus, low, high, color=colours[name], alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs above")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out)
