"""What a learned reward costs per environment step, measured so that machine load cancels out.

The policy sweeps compare runs that ran at different times on a shared 2-core box, so their
steps-per-CPU-second ratios mix the cost of the learned reward with changes in load. Here the
same short training job runs alternately on the environment's reward (``oracle``) and on a
fixed learned reward (``learned``: an R4 ensemble trained once, offline, before timing), A B A B
..., one process, one thread, and the per-step overhead is the ratio of the medians. The cost
of the reward *updates* of an online run is then added from their measured time (see the sweep
JSONs' ``reward_update_s``), which depends on the label budget and ``--reward-epochs``.

    .venv/bin/python benchmarks/bench_policy_overhead.py --algo ppo --steps 20480 --repeats 3
    .venv/bin/python benchmarks/bench_policy_overhead.py --algo sac --steps 3000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ratingrl.feedback.io import save_rated
from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
from ratingrl.feedback.teachers import Bins, RatingTeacher
from ratingrl.rl.train import RunConfig, train

ROOT = Path(__file__).resolve().parents[1]
ENV = "dmc/cartpole-balance"


def rated_dataset(path: Path) -> Path:
    """400 segments of random behaviour, rated in 4 equal-width classes (enough to learn on)."""
    rng = np.random.default_rng(0)
    episodes = collect_episodes(
        ENV, random_policy(np.array([-1.0]), np.array([1.0]), rng), 8, 0, max_steps=1000
    )
    segments = segment_episodes(episodes, 50, 20)
    data = RatingTeacher(Bins.equal_width(4, 0.0, 50.0)).rate_dataset(segments, rng)
    save_rated(replace(data, source={**data.source, "env_id": ENV}), path)
    return path


def base_config(algo: str, steps: int) -> RunConfig:
    return RunConfig(
        env_id=ENV,
        algo=algo,
        method="oracle",
        mode="offline",
        total_steps=steps,
        net_arch=(64, 64),
        batch_size=64,
        learning_starts=500,
        buffer_size=max(steps, 1000),
        n_steps=2048,
        reward_hidden=(64, 64),
        reward_epochs=20,
        eval_every=10 * steps,  # no periodic evaluation inside the timed part
        eval_episodes=1,
        checkpoint_every=10 * steps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("ppo", "sac"), default="ppo")
    parser.add_argument("--steps", type=int, default=20_480)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    rates: dict[str, list[float]] = {"oracle": [], "learned": []}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = rated_dataset(Path(tmp) / "rated.parquet")
        oracle = base_config(args.algo, args.steps)
        learned = replace(oracle, method="r4", dataset=str(dataset))
        for i in range(args.repeats):
            for name, config in (("oracle", oracle), ("learned", learned)):
                summary = train(config, Path(tmp) / f"{name}{i}", progress=False)
                rates[name].append(summary["env_steps_per_cpu_s"])
                print(f"{name} #{i}: {summary['env_steps_per_cpu_s']:.0f} env steps / CPU s")
    ratio = float(np.median(rates["learned"]) / np.median(rates["oracle"]))
    result = {
        "algo": args.algo,
        "env_id": ENV,
        "steps_per_run": args.steps,
        "env_steps_per_cpu_s": rates,
        "overhead_per_step": ratio,
        "command": f"benchmarks/bench_policy_overhead.py --algo {args.algo} --steps {args.steps} "
        f"--repeats {args.repeats}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }
    out = ROOT / "benchmarks" / "results" / f"policy_overhead_{args.algo}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"per-step overhead (learned / oracle, medians): {ratio:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
