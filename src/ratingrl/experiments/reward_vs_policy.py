"""Which reward figure predicts policy recovery: each finished run's final learned reward, scored
as the fidelity benchmark scores a method, against the recovery its policy reached.

Kendall tau and EPIC cost seconds, a policy run an hour; they are worth as much as they predict
what a policy trained on the reward achieves. For every finished policy run with a learned
reward (``reward_model.pt`` in its folder) this module pairs:

- the reward's figures on the fidelity pool of the run's environment, with the benchmark's own
  code: the held-out split of :func:`~ratingrl.experiments.fidelity_pool.split_for_seed`,
  :func:`~ratingrl.rewards.metrics.kendall_tau` of predicted against true segment returns and
  :func:`~ratingrl.experiments.epic.score_epic`. Every run is scored on the split of one seed
  (``split_seed``), so differences between runs are differences between their rewards;
- its recovery: final true return over that of the oracle run (true reward) of the same sweep,
  environment, seed, algorithm and step budget. Runs without such an oracle are listed, not
  correlated;

and gives the Spearman correlation across runs between recovery and each figure (tau and -EPIC,
higher is better for both; and, for comparison, ``tau_own``: the run's own last Kendall tau of
its final reward on the segments it had rated, from ``summary.json``, simulated teachers only)
with a 95% percentile bootstrap interval over runs (``scipy.stats.bootstrap``, paired). A
resample in which either side is constant has no rank correlation; the interval is taken over
the others and their share is reported.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ratingrl.experiments.epic import score_epic
from ratingrl.experiments.fidelity import FidelityConfig
from ratingrl.experiments.fidelity_pool import split_for_seed
from ratingrl.feedback.segments import SegmentSet
from ratingrl.rewards.metrics import kendall_tau

__all__ = ["RewardVsPolicyError", "PolicyRun", "find_runs", "correlation", "reward_vs_policy"]

FIGURES = {"kendall_tau": 1.0, "epic": -1.0, "tau_own": 1.0}
"""The figures correlated with recovery, and the sign that makes higher mean better."""
MIN_RUNS = 3
MIN_INTERVAL = 5
"""Fewer runs give a rank correlation but no interval: three runs' Spearman takes four values,
and resamples of them repeat a run so often that the percentiles say nothing."""


class RewardVsPolicyError(ValueError):
    """Input this analysis cannot use (one line: the run or environment and what is wrong)."""


@dataclass(frozen=True)
class PolicyRun:
    """What the analysis needs of one finished policy run folder."""

    folder: str
    sweep: str | None
    env_id: str
    method: str
    seed: int
    algo: str
    total_steps: int
    final_return: float
    tau_own: float | None = None

    @property
    def oracle_key(self) -> tuple:
        """Runs comparable with an oracle share this key (the oracle's true reward aside)."""
        return (self.sweep, self.env_id, self.seed, self.algo, self.total_steps)

    @property
    def has_reward(self) -> bool:
        return (Path(self.folder) / "reward_model.pt").exists()


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RewardVsPolicyError(f"cannot read {path}: {err}") from None


def load_run(folder: Path) -> PolicyRun:
    """A finished run folder (``config.json`` and ``summary.json``) as a :class:`PolicyRun`."""
    if not (folder / "summary.json").exists():
        raise RewardVsPolicyError(f"run {folder} has not finished (no summary.json)")
    config, summary = _read(folder / "config.json"), _read(folder / "summary.json")
    meta = _read(folder / "trial.json") if (folder / "trial.json").exists() else {}
    final = (summary.get("true_return_final") or {}).get("mean")
    own = (summary.get("reward_fidelity") or [{}])[-1].get("tau_all")
    if final is None or "env_id" not in config:
        raise RewardVsPolicyError(f"run {folder} is not a policy run (no env_id or final return)")
    return PolicyRun(
        str(folder), meta.get("sweep"), config["env_id"], config.get("method", "?"),
        int(config.get("seed", 0)), config.get("algo", "?"), int(config.get("total_steps", 0)),
        float(final), None if own is None else float(own),
    )  # fmt: skip


def find_runs(paths: Sequence[str | Path]) -> tuple[list[PolicyRun], int]:
    """Finished policy runs under ``paths`` and how many unfinished ones were passed over.

    A path is a run folder (it holds ``config.json``; it must have finished and, unless it is
    an oracle, hold a reward model), a results store (its ``trials/<sweep>/<trial>`` folders)
    or a folder of run folders; in the last two, unfinished runs and fidelity trials are passed
    over, and runs without a reward model are listed as such.
    """
    runs, unfinished = [], 0
    for path in map(Path, paths):
        if (path / "config.json").exists():
            run = load_run(path)
            if run.method != "oracle" and not run.has_reward:
                raise RewardVsPolicyError(f"run {path} has no reward model (reward_model.pt)")
            runs.append(run)
            continue
        if not path.is_dir():
            raise RewardVsPolicyError(f"{path} is not a run folder or a results store")
        folders = sorted((path / "trials").glob("*/*") if (path / "trials").is_dir() else [])
        folders = folders or sorted(p for p in path.iterdir() if (p / "trial.json").exists())
        if not folders:
            raise RewardVsPolicyError(f"{path} holds no runs (nor is it a run or a store)")
        for folder in folders:
            config = folder / "config.json"
            if not (folder / "summary.json").exists() or not config.exists():
                unfinished += 1
            elif "job" not in _read(config):  # fidelity trials store their job
                runs.append(load_run(folder))
    return runs, unfinished


def fidelity_pool(
    env_id: str, build: bool = False, cache_dir: str | None = None
) -> tuple[FidelityConfig, str, SegmentSet]:
    """The benchmark's config, pool file and pool of ``env_id``; built only when ``build``."""
    from ratingrl.feedback.envs import EnvError, make_env
    from ratingrl.feedback.pool import cached_pool, pool_path

    try:
        make_env(env_id).close()
    except EnvError as err:
        raise RewardVsPolicyError(str(err)) from None
    config = FidelityConfig(env_id=env_id, cache_dir=cache_dir)
    assert config.pool is not None

    def missing(_spec) -> SegmentSet:
        raise RewardVsPolicyError(
            f"no cached fidelity pool of {env_id} (looked for {pool_path(config.pool, cache_dir)});"
            f" build it with `ratingrl pool --env {env_id}` or pass --build-pools"
        )

    from ratingrl.rl.behaviour import build_pool

    builder = functools.partial(build_pool, progress=False) if build else missing
    segments = cached_pool(config.pool, builder, cache_dir)
    return config, str(pool_path(config.pool, cache_dir)), segments


def score_reward(
    run: PolicyRun, config: FidelityConfig, pool_file: str, segments: SegmentSet, split_seed: int
) -> dict:
    """Kendall tau and EPIC of a run's final reward on the held-out split of ``split_seed``."""
    from ratingrl.rewards.nets import RewardEnsemble

    model, _ = RewardEnsemble.load(Path(run.folder) / "reward_model.pt")
    dims, takes = (segments.obs.shape[-1], segments.acts.shape[-1]), (model.obs_dim, model.act_dim)
    if takes != dims:
        raise RewardVsPolicyError(f"run {run.folder}: its reward takes (obs, act) dims {takes}"
                                  f" but the pool of {run.env_id} has {dims}")  # fmt: skip
    _, test = split_for_seed(config, segments, split_seed)
    held_out = segments.subset(test)
    pred = model.predict_returns(held_out.obs, held_out.acts).mean(0)
    row = {"kendall_tau": kendall_tau(pred, held_out.true_returns), "held_out": len(test)}
    assert config.epic is not None
    reward_fn = model.as_reward_fn()
    epic = score_epic(config.epic, run.env_id, pool_file, segments, test, split_seed, reward_fn)
    return row | {k: epic[k] for k in ("epic", "epic_estimator", "epic_time_s")}


def _centred_ranks(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values))
    for group in np.unique(groups):
        ranks = stats.rankdata(values[groups == group])
        out[groups == group] = ranks - ranks.mean()
    return out


def _within(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> float:
    """Spearman rho within groups: the correlation of ranks centred in each group, so a group
    that is easier (higher figures and higher recovery alike) adds nothing by being easier."""
    return stats.pearsonr(_centred_ranks(a, groups), _centred_ranks(b, groups)).statistic


def correlation(
    figure: Sequence[float],
    recovery: Sequence[float],
    reps: int,
    seed: int,
    groups: Sequence[int] | None = None,
) -> dict:
    """Spearman rho of ``figure`` and ``recovery`` over runs (within ``groups`` when given,
    :func:`_within`), with a 95% paired bootstrap interval over runs (percentile; resamples
    with a constant side left out and counted) from ``MIN_INTERVAL`` runs up."""
    x, y = np.asarray(figure, dtype=float), np.asarray(recovery, dtype=float)
    data = (x, y) if groups is None else (x, y, np.asarray(groups))
    statistic = (lambda a, b: stats.spearmanr(a, b).statistic) if groups is None else _within
    out: dict = {"n": int(x.size), "spearman": None, "ci95": None, "undefined_resamples": None}
    if x.size < MIN_RUNS:
        return out | {"note": f"fewer than {MIN_RUNS} runs"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: NaN, counted below
        out["spearman"] = float(statistic(*data))
        if x.size < MIN_INTERVAL:
            return out | {"note": f"no interval from fewer than {MIN_INTERVAL} runs"}
        result = stats.bootstrap(
            data, statistic, paired=True, vectorized=False, n_resamples=reps,
            method="percentile", rng=np.random.default_rng(seed),
        )  # fmt: skip
    dist = result.bootstrap_distribution
    defined = dist[np.isfinite(dist)]
    out["undefined_resamples"] = float(1 - defined.size / dist.size)
    if defined.size:
        out["ci95"] = [float(v) for v in np.percentile(defined, [2.5, 97.5])]
    return out


def _correlations(rows: list[dict], reps: int, seed: int) -> list[dict]:
    """Over all runs, within environments (when there are several), and in each environment
    with ``MIN_RUNS`` runs or more."""
    usable = [r for r in rows if r.get("recovery") is not None and r.get("kendall_tau") is not None]
    envs = sorted({r["env_id"] for r in usable})
    scopes = {"all": usable, **({"within env": usable} if len(envs) > 1 else {})}
    for env in envs:
        scopes[env] = [r for r in usable if r["env_id"] == env]
    out = []
    for scope, chosen in scopes.items():
        if scope in envs and (len(chosen) < MIN_RUNS or len(envs) == 1):
            continue
        for name, sign in FIGURES.items():
            use = [r for r in chosen if r.get(name) is not None and np.isfinite(r[name])]
            x, y = [sign * r[name] for r in use], [r["recovery"] for r in use]
            groups = [envs.index(r["env_id"]) for r in use] if scope == "within env" else None
            figure = name if sign > 0 else f"-{name}"
            out.append({"figure": figure, "scope": scope} | correlation(x, y, reps, seed, groups))
    return out


def reward_vs_policy(
    paths: Sequence[str | Path],
    build_pools: bool = False,
    envs: Sequence[str] = (),
    split_seed: int = 0,
    reps: int = 10_000,
    seed: int = 0,
    cache_dir: str | None = None,
) -> dict:
    """Score every finished run with a learned reward under ``paths`` (only ``envs`` when
    given), pair it with its recovery, and correlate; the report as a JSON-able dict."""
    runs, unfinished = find_runs(paths)
    if envs:
        runs = [r for r in runs if r.env_id in set(envs)]
    by_folder = sorted(runs, key=lambda r: r.folder, reverse=True)  # the first oracle found wins
    oracles = {r.oracle_key: r for r in by_folder if r.method == "oracle"}
    pools: dict[str, tuple] = {}
    rows = []
    for run in sorted((r for r in runs if r.method != "oracle"), key=lambda r: r.folder):
        oracle = oracles.get(run.oracle_key)
        row: dict = asdict(run) | {"oracle": None, "oracle_return": None, "recovery": None}
        if oracle is not None:
            row |= {"oracle": oracle.folder, "oracle_return": oracle.final_return}
            if oracle.final_return > 0:
                row["recovery"] = run.final_return / oracle.final_return
        row["note"] = "oracle return <= 0" if row["oracle"] else "no matching oracle"
        row["note"] = "" if row["recovery"] is not None else row["note"]
        if not run.has_reward:
            row["note"] = "no reward model"
        else:
            if run.env_id not in pools:
                pools[run.env_id] = fidelity_pool(run.env_id, build_pools, cache_dir)
            row |= score_reward(run, *pools[run.env_id], split_seed)
        rows.append(row)
    if not rows:
        raise RewardVsPolicyError(f"no finished runs with a learned reward under {list(paths)}")
    return {
        "paths": [str(p) for p in paths],
        "split_seed": split_seed,
        "bootstrap": {"reps": reps, "seed": seed, "interval": "95% percentile, paired over runs"},
        "pools": {env: pool[1] for env, pool in pools.items()},
        "oracles": sorted(o.folder for o in oracles.values()),
        "unfinished_passed_over": unfinished,
        "runs": rows,
        "correlations": _correlations(rows, reps, seed),
    }
