"""Run a sweep's trials on Ray, into a results store; stop it at any time and start it again.

    spec = load_spec("examples/sweeps/quick.toml")
    outcome = run_sweep(spec, "runs/sweeps/quick")                    # a local Ray instance
    outcome = run_sweep(spec, store, SweepOptions(address="auto"))   # an existing cluster

Each trial is one Ray task (Ray core, not Tune: a trial is one ``Run`` that checkpoints and
resumes itself, and the store keeps the results, so Tune's search, schedulers and experiment
folders would only duplicate them). The task reserves ``cpus_per_trial`` CPUs and
``gpus_per_trial`` GPUs; at most as many trials as the cluster has room for are in flight, so
"running" in the progress line means running. Inside a task PyTorch uses one thread.

Starting again is always safe: a finished trial (``summary.json``) is skipped, a stopped one
continues from its checkpoint (:meth:`ratingrl.rl.run.Run.resume`, every label kept), a failed
one is tried again. A trial that raises, or whose worker dies, is recorded with its error in its
folder and in the index and never stops the others. A trial folder holding another
configuration than the spec asks for is reported as failed and left untouched.

Trial folders are written by the workers and read by this process: on a cluster of several
machines the store must be on a file system they all mount at the same path.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ratingrl.experiments.results import ResultStore
from ratingrl.experiments.sweep_spec import SweepSpec, Trial
from ratingrl.progress import progress_bar

__all__ = ["SweepOptions", "SweepOutcome", "run_sweep", "plan"]

_META_FILES = ("trial.json", "error.txt")


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (the spec says what runs)."""

    address: str | None = None
    """None: start a local Ray instance; ``auto`` or ``ray://HOST:10001``: join a cluster."""
    cpus: int | None = None
    """CPUs of the local instance (None: every core); ignored with ``address``."""
    max_running: int | None = None
    """Trials in flight at once (None: as many as the cluster's CPUs and GPUs allow)."""
    retry_failed: bool = True
    progress: bool = True


@dataclass
class SweepOutcome:
    """What a call to :func:`run_sweep` did, trial ids by what happened to them."""

    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)


def plan(spec: SweepSpec, store: ResultStore) -> list[tuple[Trial, str]]:
    """Each trial with its status in ``store`` (``conflict``: its folder holds another
    configuration), without running anything: what ``ratingrl sweep --plan`` prints."""
    out = []
    for trial in spec.trials():
        status = store.status(trial.trial_id)
        stored = _stored_config(store, trial)
        if stored is not None and _differences(stored, trial.config):
            status = "conflict"
        out.append((trial, status))
    return out


def run_sweep(
    spec: SweepSpec, store: str | Path, options: SweepOptions | None = None
) -> SweepOutcome:
    """Run every trial of ``spec`` not yet finished; the index is rewritten as trials end."""
    options = options or SweepOptions()
    results = ResultStore(Path(store).resolve())
    results.root.mkdir(parents=True, exist_ok=True)
    _write_spec(results, spec)
    outcome, todo = SweepOutcome(), []
    for trial, status in plan(spec, results):
        meta = {**results.meta(trial.trial_id), **trial.meta(spec.name)}
        if status == "finished":
            outcome.skipped.append(trial.trial_id)
        elif status == "conflict":
            message = _conflict(results, trial)
            results.record_failure(trial.trial_id, meta, message, message)
            outcome.failed[trial.trial_id] = message
        elif status == "failed" and not options.retry_failed:
            outcome.failed[trial.trial_id] = meta.get("error", "")
        else:
            if status == "pending":  # its folder says who it is before it starts
                results.write_meta(trial.trial_id, {**meta, "error": None})
            todo.append(trial)
    outcome.rows = results.rebuild()
    if todo:
        _execute(spec, results, todo, options, outcome)
    return outcome


# -- execution on Ray ------------------------------------------------------------------------
def _execute(
    spec: SweepSpec,
    results: ResultStore,
    todo: list[Trial],
    options: SweepOptions,
    outcome: SweepOutcome,
) -> None:
    import ray

    started = _connect(ray, options)
    try:
        # max_calls=1: each trial in a fresh worker process (the code as it is when the trial
        # starts, no state or memory carried over from the trial before it)
        task = ray.remote(max_calls=1)(_run_trial).options(
            num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial, max_retries=0
        )
        total, done = len(outcome.skipped) + len(todo), len(outcome.skipped)
        with progress_bar(options.progress) as bar:
            line = bar.add_task(f"sweep {spec.name}", total=total, completed=done, status="")
            if any(t.kind == "fidelity" for t in todo):
                bar.update(line, status="building the pools of behaviour (once per pool)")
            pools = _pool_files(ray, spec, results, todo, outcome)
            _check_requests(todo, pools)
            queue = [t for t in todo if t.trial_id not in outcome.failed]
            bar.advance(line, len(todo) - len(queue))
            in_flight: dict = {}
            last = f"{done} finished before"
            while queue or in_flight:
                room = _room(ray, spec, options) - len(in_flight)
                while queue and room > 0:
                    trial = queue.pop(0)
                    meta = _start_meta(results, trial, spec.name)
                    args = (trial.kind, str(results.root), trial.trial_id, trial.config, meta)
                    in_flight[task.remote(*args, pools.get(trial.trial_id))] = trial
                    room -= 1
                bar.update(line, status=_status(in_flight, outcome, last))
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=30.0)
                for ref in ready:
                    trial = in_flight.pop(ref)
                    last = _finish(ray, ref, trial, results, spec, outcome)
                    bar.advance(line)
                    outcome.rows = results.rebuild(running=[t.trial_id for t in in_flight.values()])
                bar.update(line, status=_status(in_flight, outcome, last))
    finally:
        if started:
            ray.shutdown()  # a trial still running stops here; the next sweep resumes it
        outcome.rows = results.rebuild()


def _connect(ray, options: SweepOptions) -> bool:
    """Join ``options.address``, or start a local instance; True if this call started Ray."""
    if ray.is_initialized():
        return False
    if options.address:
        ray.init(address=options.address, log_to_driver=False)
        return True
    ray.init(
        address="local",  # a new instance, even where `ray start` left a cluster running
        num_cpus=options.cpus or os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024**2,  # trials pass file paths and small dicts only
    )
    return True


def _room(ray, spec: SweepSpec, options: SweepOptions) -> int:
    """Trials the cluster can run at once (it may grow while the sweep runs)."""
    if options.max_running:
        return options.max_running
    resources = ray.cluster_resources()
    room = int(resources.get("CPU", 1) // spec.cpus_per_trial)
    if spec.gpus_per_trial:
        room = min(room, int(resources.get("GPU", 0) // spec.gpus_per_trial))
    return max(1, room)


def _start_meta(results: ResultStore, trial: Trial, sweep: str) -> dict:
    """The trial's ``trial.json`` as it starts (one attempt more), written before it runs."""
    meta = {**results.meta(trial.trial_id), **trial.meta(sweep)}
    meta["attempts"] = int(meta.get("attempts", 0)) + 1
    results.write_meta(trial.trial_id, meta)
    return meta


def _finish(ray, ref, trial: Trial, results: ResultStore, spec, outcome: SweepOutcome) -> str:
    """Record how one trial ended; the progress line's last event."""
    try:
        result = ray.get(ref)
    except Exception as err:  # the worker died, or Ray could not run the task
        result = {"error": f"{type(err).__name__}: {err}", "traceback": str(err)}
    meta = {**results.meta(trial.trial_id), **trial.meta(spec.name)}
    if result.get("error"):
        error = result["error"].strip().splitlines()[0][:300]
        results.record_failure(trial.trial_id, meta, result["error"], result.get("traceback", ""))
        outcome.failed[trial.trial_id] = result["error"]
        return f"{trial.trial_id} failed: {error}"
    results.write_meta(trial.trial_id, {**meta, "error": None})
    (results.trial_dir(trial.trial_id) / "error.txt").unlink(missing_ok=True)
    outcome.finished.append(trial.trial_id)
    return f"{trial.trial_id}: {result.get('status', 'finished')}"


def _status(in_flight: dict, outcome: SweepOutcome, last: str) -> str:
    return f"running {len(in_flight)} | failed {len(outcome.failed)} | {last}"


# -- inside a Ray worker ---------------------------------------------------------------------
def _run_trial(
    kind: str, root: str, trial_id: str, config: dict, meta: dict, pool_file: str | None
) -> dict:
    """One trial, in a Ray worker: run it and say how it went; errors are returned, not
    raised, so the driver records the message and the traceback the same way every time."""
    try:
        import torch

        torch.set_num_threads(1)
        store = ResultStore(root)
        if kind == "fidelity":
            return _run_fidelity_trial(store, trial_id, config, meta, pool_file)
        return _run_policy_trial(store, trial_id, config, meta)
    except Exception as err:  # every failure is recorded, none stops the sweep
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def _run_policy_trial(store: ResultStore, trial_id: str, config: dict, meta: dict) -> dict:
    from ratingrl.rl.config import RunConfig
    from ratingrl.rl.run import Run

    run_config, folder = RunConfig.from_dict(config), store.trial_dir(trial_id)
    if (folder / "config.json").exists():
        run = Run.resume(folder, config=run_config, progress=False)
    else:
        for name in _META_FILES:  # left by a failed attempt: the run folder must start empty
            (folder / name).unlink(missing_ok=True)
        try:
            run = Run.create(run_config, folder, progress=False)
        except Exception:
            store.write_meta(trial_id, meta)  # the folder still says whose it is
            raise
    store.write_meta(trial_id, {**meta, "error": None})
    summary = run.learn()
    final = (summary.get("true_return_final") or {}).get("mean")
    return {"status": "finished" if final is None else f"true return {final:.1f}"}


def _run_fidelity_trial(
    store: ResultStore, trial_id: str, config: dict, meta: dict, pool_file: str | None
) -> dict:
    from ratingrl.experiments.fidelity import _Job, run_one  # one condition of the benchmark
    from ratingrl.feedback.io import atomic_write_bytes

    folder = store.trial_dir(trial_id)
    store.write_meta(trial_id, {**meta, "error": None})
    atomic_write_bytes(folder / "config.json", json.dumps(config, indent=2).encode())
    fidelity = _fidelity_from_dict(config["fidelity"])
    row = run_one(fidelity, str(pool_file), _Job(**config["job"]))
    atomic_write_bytes(folder / "summary.json", json.dumps(row, indent=2).encode())
    return {"status": f"tau {row['kendall_tau']:.3f}"}


def _build_pool(config: dict) -> str:
    """The pool a fidelity trial scores on, built once per pool before its trials start."""
    import torch

    from ratingrl.experiments.fidelity import ensure_pool

    torch.set_num_threads(1)
    return str(ensure_pool(_fidelity_from_dict(config), progress=False))


def _fidelity_from_dict(data: dict):
    from ratingrl.experiments.fidelity import FidelityConfig
    from ratingrl.experiments.sweep_spec import _nested_replace

    return _nested_replace(FidelityConfig(env_id=data["env_id"]), data)


def _check_requests(todo: list[Trial], pools: dict[str, str]) -> None:
    """Refuse the sweep, as a typo is refused, when a fidelity trial asks its pool for more than
    it holds (more ratings than training segments...): one line, before any trial runs."""
    from ratingrl.experiments.fidelity import RequestError, check_requests
    from ratingrl.experiments.sweep_spec import SpecError
    from ratingrl.feedback.io import load_segments

    loaded: dict[str, object] = {}
    for trial in todo:
        if trial.trial_id not in pools:
            continue
        path = pools[trial.trial_id]
        if path not in loaded:
            loaded[path] = load_segments(path)[0]
        config = _fidelity_from_dict(trial.config["fidelity"])
        try:
            check_requests(config, loaded[path], [trial.seed])
        except RequestError as err:
            larger = f"pool.segments_per_level = N (now {config.pool.level_target})"
            message = err.message(f"{err.field} =", larger)
            raise SpecError(f"trial {trial.trial_id}: {message}") from None


def _pool_files(ray, spec, results: ResultStore, todo: list[Trial], outcome) -> dict[str, str]:
    """Trial id -> pool file for the fidelity trials; a pool that fails fails its trials."""
    by_pool: dict[str, list[Trial]] = {}
    for trial in todo:
        if trial.kind == "fidelity":
            fidelity = trial.config["fidelity"]
            key = json.dumps([fidelity["pool"], fidelity["cache_dir"]], sort_keys=True)
            by_pool.setdefault(key, []).append(trial)
    if not by_pool:
        return {}
    build = ray.remote(_build_pool).options(num_cpus=spec.cpus_per_trial, max_retries=0)
    refs = {key: build.remote(trials[0].config["fidelity"]) for key, trials in by_pool.items()}
    files = {}
    for key, trials in by_pool.items():
        try:
            path = ray.get(refs[key])
        except Exception as err:
            message = f"building the pool failed: {type(err).__name__}: {err}"
            for trial in trials:
                meta = {**results.meta(trial.trial_id), **trial.meta(spec.name)}
                results.record_failure(trial.trial_id, meta, message, str(err))
                outcome.failed[trial.trial_id] = message
            continue
        files.update({trial.trial_id: path for trial in trials})
    return files


# -- the store's copy of the spec ------------------------------------------------------------
def _write_spec(results: ResultStore, spec: SweepSpec) -> None:
    from ratingrl.feedback.io import atomic_write_bytes

    data = {k: v for k, v in spec.__dict__.items()}
    data["written"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = results.root / "sweeps" / f"{spec.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=2, default=list).encode())


def _stored_config(store: ResultStore, trial: Trial) -> dict | None:
    """The configuration a trial folder holds, a policy run's upgraded as a resume reads it."""
    stored = store.config(trial.trial_id)
    if stored is None or trial.kind != "policy":
        return stored
    from ratingrl.rl.config import RunConfig, upgrade_config

    return RunConfig.from_dict(upgrade_config(stored)).to_dict()


def _differences(stored: dict, planned: dict) -> list[str]:
    stored = {k: v for k, v in stored.items() if k != "version"}
    planned = {k: v for k, v in planned.items() if k != "version"}
    return sorted(k for k in set(stored) | set(planned) if stored.get(k) != planned.get(k))


def _conflict(results: ResultStore, trial: Trial) -> str:
    stored = _stored_config(results, trial) or {}
    keys = _differences(stored, trial.config)
    detail = ", ".join(f"{k}: {stored.get(k)!r} -> {trial.config.get(k)!r}" for k in keys[:5])
    return (
        f"{results.trial_dir(trial.trial_id)} holds a trial of another configuration ({detail}); "
        "use another store, or remove that folder to run it again"
    )
