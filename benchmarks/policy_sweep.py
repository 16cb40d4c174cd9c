"""Policies from learned rewards at CPU scale: policy recovery and overhead against the oracle.

Runs ``ratingrl train`` for every (method, seed) of a track, at most ``--jobs`` at a time with
one thread each, then writes ``benchmarks/results/policy_<track>.json`` and
``docs/figures/policy_<track>.png``. Interrupted runs are resumed (``--resume``) and finished ones
skipped, so the script can be stopped and started again at no cost.

    .venv/bin/python benchmarks/policy_sweep.py --track ppo --jobs 2
    .venv/bin/python benchmarks/policy_sweep.py --track sac --jobs 2
    .venv/bin/python benchmarks/policy_sweep.py --track ppo --report-only

The tracks (environments and run-config overrides) are in ``ratingrl.experiments.tracks``.

Superseded by ``ratingrl sweep examples/sweeps/<track>.toml`` (the same tracks on Ray, on one
machine or a cluster, into a results store that ``ratingrl results`` queries and ``ratingrl
report`` turns into tables with intervals). This script stays for the runs it already made: the
JSON reports and figures cited in docs/benchmarks.md came from it, and its run folders
(``runs/policy_sweep/<track>/...``) resume with it.

Policy recovery = true return of a method / the oracle's, same seed and same env steps (final
evaluation; also the mean over the learning curve, and at the last evaluation both runs reached,
by which a stopped or still-running run is compared). Overhead = env steps per CPU second of the
learned-reward run (reward updates included, evaluation excluded) / the oracle's; CPU time,
because wall time on a machine shared with other jobs stretches with their load (the wall-clock
ratio is reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ratingrl.experiments.tracks import METHODS, TRACKS, run_config

ROOT = Path(__file__).resolve().parents[1]
RATINGRL = str(ROOT / ".venv" / "bin" / "ratingrl")
RUNTIME = ["--threads", "1", "--no-progress"]


def run_path(runs_dir: Path, track: str, env: str, method: str, seed: int) -> Path:
    base = runs_dir / track
    if not TRACKS[track].flat:
        base = base / env.replace("/", "_")
    return base / f"{method}_s{seed}"


def command(track: str, env: str, method: str, seed: int, run: Path) -> list[str]:
    """``ratingrl train`` of one run: resumed if it was started, else from the track's config
    (written beside the run folder, so the command line stays short and exact)."""
    if (run / "config.json").exists():
        return [RATINGRL, "train", "--resume", str(run), *RUNTIME]
    config = run.parent / f"{run.name}.config.json"
    run_config(track, env, method, seed).save(config)
    return [RATINGRL, "train", "--config", str(config), "--out", str(run), "--overwrite", *RUNTIME]


def _train_commands() -> list[str]:
    """Command lines of every ``ratingrl train`` process on the machine (any sweep's)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if " train " in line and "ratingrl" in line:
            found.append(line)
    return found


def run_all(
    track: str,
    seeds: int,
    jobs: int,
    runs_dir: Path,
    methods: tuple[str, ...],
    envs: tuple[str, ...] | None = None,
) -> None:
    """Every (seed, env, method) run, seed-major so each seed's comparison completes early.

    ``jobs`` caps the ``ratingrl train`` processes on the whole machine, so several sweeps
    started side by side share the cores; a run another sweep is already training is skipped.
    """
    envs = envs or TRACKS[track].envs
    queue = [(e, m, s) for s in range(seeds) for e in envs for m in methods]
    running: list[tuple[subprocess.Popen, str]] = []
    while queue or running:
        others = _train_commands()
        while queue and len(others) < jobs:
            env, method, seed = queue.pop(0)
            run = run_path(runs_dir, track, env, method, seed)
            if (run / "summary.json").exists() or any(f" {run} " in f"{c} " for c in others):
                continue
            run.parent.mkdir(parents=True, exist_ok=True)
            log = open(run.parent / f"{method}_s{seed}.log", "a")  # noqa: SIM115
            cmd = command(track, env, method, seed, run)
            print(" ".join(cmd), flush=True)
            env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            running.append((subprocess.Popen(cmd, stdout=log, stderr=log, env=env_vars), str(run)))
            others.append(" ".join(cmd))
        time.sleep(5)
        for proc, name in list(running):
            if proc.poll() is not None:
                print(f"{name}: exit {proc.returncode}", flush=True)
                running.remove((proc, name))


def _load_run(path: Path) -> dict | None:
    from ratingrl.rl.evaluation import eval_curve

    if not (path / "config.json").exists():
        return None
    curve = eval_curve(path)
    if not (path / "summary.json").exists():
        # stopped or still running: only its evaluations so far can be compared
        if not len(curve["env_steps"]):
            return None
        return {"finished": False, "curve": {k: v.tolist() for k, v in curve.items()}}
    summary = json.loads((path / "summary.json").read_text())
    return {
        "finished": True,
        "true_return_final": summary["true_return_final"]["mean"],
        "true_return_best": summary["true_return_best"]["mean"],
        "learned_return_final": (summary["learned_return_final"] or {}).get("mean"),
        "labels": summary["labels_used"],
        "env_steps": summary["env_steps"],
        "env_steps_per_s": summary["env_steps_per_s"],
        "env_steps_per_cpu_s": summary.get("env_steps_per_cpu_s"),
        "reward_update_s": summary["reward_update_s"],
        "wall_time_s": summary["wall_time_s"],
        "curve": {k: v.tolist() for k, v in curve.items()},
    }


def _compare(runs: dict[str, dict[int, dict]]) -> dict:
    """Recovery and overhead of every method against the oracle of the same seed."""
    table = {}
    oracle = runs["oracle"]
    for method, done in runs.items():
        rec, rec_curve, over, over_cpu, over_loop = [], [], [], [], []
        rec_common, common_steps = [], []
        for seed, r in done.items():
            if seed not in oracle:
                continue
            o = oracle[seed]
            n = min(len(r["curve"]["true_return"]), len(o["curve"]["true_return"]))
            ours, theirs = r["curve"]["true_return"][:n], o["curve"]["true_return"][:n]
            rec_curve.append(float(np.mean(ours) / np.mean(theirs)))
            # the last evaluation both runs reached: a fair comparison of unfinished runs
            rec_common.append(ours[-1] / theirs[-1])
            common_steps.append(int(r["curve"]["env_steps"][n - 1]))
            if not (r["finished"] and o["finished"]):
                continue
            rec.append(r["true_return_final"] / o["true_return_final"])
            if r["env_steps_per_s"] and o["env_steps_per_s"]:
                over.append(r["env_steps_per_s"] / o["env_steps_per_s"])
            if r["env_steps_per_cpu_s"] and o["env_steps_per_cpu_s"]:
                over_cpu.append(r["env_steps_per_cpu_s"] / o["env_steps_per_cpu_s"])
                # the same without the reward updates: the cost of the per-step machinery
                cpu = r["env_steps"] / r["env_steps_per_cpu_s"] - r["reward_update_s"]
                over_loop.append(r["env_steps"] / cpu / o["env_steps_per_cpu_s"])
        finished = {seed: r for seed, r in done.items() if r["finished"]}
        finals = [r["true_return_final"] for r in finished.values()]
        table[method] = {
            "seeds": sorted(done),
            "finished_seeds": sorted(finished),
            "true_return_final_mean": float(np.mean(finals)) if finals else None,
            "true_return_final": finals,
            "policy_recovery_final": _mean_sd(rec),
            "policy_recovery_curve_mean": _mean_sd(rec_curve),
            "policy_recovery_last_common_eval": _mean_sd(rec_common),
            "last_common_eval_step": common_steps,
            "true_return_last_eval": [r["curve"]["true_return"][-1] for r in done.values()],
            "last_eval_step": [r["curve"]["env_steps"][-1] for r in done.values()],
            "overhead_steps_per_cpu_s_ratio": _mean_sd(over_cpu),
            "overhead_excluding_reward_updates": _mean_sd(over_loop),
            "overhead_steps_per_wall_s_ratio": _mean_sd(over),
            "reward_update_s": [r["reward_update_s"] for r in finished.values()],
            "env_steps_per_s": [r["env_steps_per_s"] for r in finished.values()],
            "env_steps_per_cpu_s": [r["env_steps_per_cpu_s"] for r in finished.values()],
        }
    return table


def report(track: str, seeds: int, runs_dir: Path, methods: tuple[str, ...]) -> dict:
    per_env = {}
    for env in TRACKS[track].envs:
        runs: dict[str, dict[int, dict]] = {m: {} for m in methods}
        for method in methods:
            for seed in range(seeds):
                run = _load_run(run_path(runs_dir, track, env, method, seed))
                if run is not None:
                    runs[method][seed] = run
        per_env[env] = {"summary": _compare(runs), "runs": runs}
    return {
        "track": track,
        "command": f"{sys.executable} benchmarks/policy_sweep.py --track {track} --seeds {seeds}",
        "overrides": json.loads(json.dumps(TRACKS[track].overrides)),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu(),
            "python": platform.python_version(),
            "note": "each run used one thread; two runs at a time",
        },
        "envs": {
            env: {
                "summary": d["summary"],
                "runs": {m: {str(s): r for s, r in by.items()} for m, by in d["runs"].items()},
            }
            for env, d in per_env.items()
        },
    }


def _mean_sd(xs: list[float]) -> dict | None:
    if not xs:
        return None
    return {"mean": float(np.mean(xs)), "sd": float(np.std(xs)), "values": [float(x) for x in xs]}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def plot(result: dict, env: str, out: Path) -> Path | None:
    from ratingrl.experiments.policy_demo import plot_curves

    by_method = result["envs"][env]["runs"]
    curves = {
        method: [
            (np.asarray(r["curve"]["env_steps"]), np.asarray(r["curve"]["true_return"]))
            for r in by_seed.values()
        ]
        for method, by_seed in by_method.items()
        if by_seed
    }
    if not curves:
        return None
    seeds = max(len(by_seed) for by_seed in by_method.values())
    title = (
        f"{result['track'].upper()} on {env}: true return "
        f"(bold: mean of {seeds} seeds; thin: each seed)"
    )
    return plot_curves(curves, out, title=title)


def markdown(result: dict, env: str) -> str:
    """The docs table of one environment: returns, recovery and overhead per method."""

    def ms(stat: dict | None, digits: int = 2) -> str:
        if not stat:
            return "-"
        if len(stat["values"]) == 1:
            return f"{stat['mean']:.{digits}f}"
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"

    rows = [
        "| method | final true return (per seed) | recovery (final) | recovery (curve) "
        "| recovery (last common eval) | overhead (CPU) | excl. updates | reward updates (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, row in result["envs"][env]["summary"].items():
        if not row["seeds"]:
            continue
        # a finished run's curve ends with its final evaluation (train logs it last)
        done = row["finished_seeds"]
        per_seed = ", ".join(
            f"{ret:.0f}" if seed in done else f"{ret:.0f} at {at // 1000}k"
            for seed, ret, at in zip(
                row["seeds"], row["true_return_last_eval"], row["last_eval_step"], strict=True
            )
        )
        common = ms(row["policy_recovery_last_common_eval"])
        if row["last_common_eval_step"]:
            common += " (" + ", ".join(f"{s // 1000}k" for s in row["last_common_eval_step"]) + ")"
        updates = ", ".join(f"{x:.0f}" for x in row["reward_update_s"])
        rows.append(
            f"| {method} | {per_seed} | {ms(row['policy_recovery_final'])} "
            f"| {ms(row['policy_recovery_curve_mean'])} | {common} "
            f"| {ms(row['overhead_steps_per_cpu_s_ratio'])} "
            f"| {ms(row['overhead_excluding_reward_updates'])} | {updates} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", choices=sorted(TRACKS), required=True)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--envs", default="", help="comma-separated subset of the track's envs")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "policy_sweep")
    parser.add_argument("--report-only", action="store_true", help="only aggregate and plot")
    parser.add_argument("--markdown", action="store_true", help="print the docs tables")
    args = parser.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    if "oracle" not in methods:
        methods = ("oracle", *methods)  # every ratio needs the oracle of the same seed
    if not args.report_only:
        envs = tuple(e for e in args.envs.split(",") if e) or None
        run_all(args.track, args.seeds, args.jobs, args.runs_dir, methods, envs)
    result = report(args.track, args.seeds, args.runs_dir, methods)
    out = ROOT / "benchmarks" / "results" / f"policy_{args.track}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for env in TRACKS[args.track].envs:
        name = "" if TRACKS[args.track].flat else "_" + env.replace("/", "_")
        figure = plot(result, env, ROOT / "docs" / "figures" / f"policy_{args.track}{name}.png")
        print(f"== {env} (figure: {figure})")
        if args.markdown:
            print(markdown(result, env))
            continue
        for method, row in result["envs"][env]["summary"].items():
            print(method, json.dumps({k: v for k, v in row.items() if not k.startswith("env_")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
