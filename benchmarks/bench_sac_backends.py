"""SAC per CPU second with SB3 (PyTorch) and SBX (JAX), A/B interleaved on a shared machine.

Each run is ``ratingrl train`` in its own process with one thread (``--threads 1``, which also
puts XLA on one thread, and ``OMP_NUM_THREADS=1``), the ``sac300k`` track's settings on
``dmc/walker-walk`` cut to ``--steps`` env steps, no evaluation before the end. The runs
alternate sb3, sbx, sb3, sbx, ... so that the load of the machine falls on both alike, and each
run's ``env_steps_per_cpu_s`` (process CPU time, all threads, evaluation excluded) is read from
its summary. The load average is recorded before every run.

A run's rate includes what it pays once: SBX compiles its functions with XLA at the start
(~10-15 CPU s here), the first ``learning_starts`` steps train nothing. With two lengths
(``--steps 10000,30000``) the steady rate is also given: the extra steps over the extra CPU
seconds of the longer run, which is what a 300k-step run approaches.

    .venv/bin/python benchmarks/bench_sac_backends.py --steps 20000 --repeats 2
    .venv/bin/python benchmarks/bench_sac_backends.py --steps 10000,30000 --repeats 1
    .venv/bin/python benchmarks/bench_sac_backends.py --method r4 --steps 20000 --repeats 1

``--method r4`` runs the online learned-reward loop too (R4, its first two rounds of 10 ratings
at 9k and 18k steps: the track's schedule unit), which exercises relabelling on SBX's buffer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ratingrl.experiments.tracks import run_config

ROOT = Path(__file__).resolve().parents[1]
ENV = "dmc/walker-walk"


def _config(backend: str, method: str, steps: int):
    config = run_config("sac300k", ENV, method, 0).replace(
        backend=backend,
        total_steps=steps,
        buffer_size=steps,
        eval_every=10 * steps,
        eval_episodes=1,
        checkpoint_every=10 * steps,
    )
    if method != "oracle":
        config = config.replace(budget=20)  # the track's first two rounds (9k, 18k)
    return config


def _one_run(backend: str, method: str, steps: int, folder: Path) -> dict:
    config_path = folder / f"{backend}.json"
    _config(backend, method, steps).save(config_path)
    run_dir = folder / f"run_{backend}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("XLA_FLAGS", None)  # --threads 1 sets XLA's one-thread flags
    load = os.getloadavg()
    subprocess.run(
        [str(Path(sys.executable).parent / "ratingrl"), "train", "--config", str(config_path)]
        + ["--out", str(run_dir), "--overwrite", "--no-progress", "--threads", "1"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "backend": backend,
        "steps": steps,
        "cpu_s": steps / summary["env_steps_per_cpu_s"],
        "env_steps_per_cpu_s": summary["env_steps_per_cpu_s"],
        "env_steps_per_s": summary["env_steps_per_s"],
        "reward_update_s": summary["reward_update_s"],
        "true_return_final": summary["true_return_final"]["mean"],
        "load_average_before": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="20000", help="run length(s), comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--method", default="oracle")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    lengths = [int(n) for n in args.steps.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for steps in lengths:
                for backend in ("sb3", "sbx"):
                    row = _one_run(backend, args.method, steps, Path(tmp))
                    runs.append({"repeat": repeat, **row})
                    print(json.dumps(runs[-1]), flush=True)
    rates = {b: _rates(runs, b, lengths) for b in ("sb3", "sbx")}
    ratio = {k: rates["sbx"][k] / rates["sb3"][k] for k in rates["sb3"]}
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "track": "sac300k",
        "env_id": ENV,
        "method": args.method,
        "steps": lengths,
        "runs": runs,
        "env_steps_per_cpu_s": rates,
        "sbx_over_sb3_cpu": ratio,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sac_backends_{args.method}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"SBX / SB3 env steps per CPU second (medians): {ratio}; {path}")


def _rates(runs: list[dict], backend: str, lengths: list[int]) -> dict[str, float]:
    """Median whole-run rate per length; with two lengths, the steady rate between them."""
    mine = [r for r in runs if r["backend"] == backend]
    by_length = {n: [r for r in mine if r["steps"] == n] for n in lengths}
    out = {
        f"whole_run_{n}": float(np.median([r["env_steps_per_cpu_s"] for r in rows]))
        for n, rows in by_length.items()
    }
    if len(lengths) == 2:
        cpu = [np.median([r["cpu_s"] for r in by_length[n]]) for n in lengths]
        out["steady"] = float((lengths[1] - lengths[0]) / (cpu[1] - cpu[0]))
    return out


if __name__ == "__main__":
    main()
