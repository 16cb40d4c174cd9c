"""What the online rounds of the ``sac300k`` track cost in CPU seconds, part by part.

A 300k-step A/B of SAC runs takes hours here, and on a shared machine its ratio carries the load
of the day; the parts of a learned-reward run's extra cost are measured instead, one process,
one thread, on walker-walk's shapes (24-d observations, 6-d actions) with R4 and the track's
settings: the ten reward updates (10, 20, ... 100 ratings over 7 of R4's 10 classes, warm
started), relabelling a full 300k-transition replay buffer, pickling it for a checkpoint,
scoring the candidate windows of a query (every window, and every step once), and scoring one
step in the wrapper. The whole-run ratio follows for an oracle rate given with ``--oracle-rate``
(env steps per CPU second of SB3 SAC on walker-walk).

    .venv/bin/python benchmarks/bench_online_round_cost.py --oracle-rate 190
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from ratingrl.experiments.tracks import run_config
from ratingrl.feedback.rollouts import Episode, segment_episodes
from ratingrl.feedback.segments import RatedSegments, RatingScale, SegmentSet
from ratingrl.rl.builders import make_updater
from ratingrl.rl.online import window_returns
from ratingrl.rl.relabel import relabel_replay_buffer

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT, STEPS, ROUNDS = 24, 6, 300_000, 10


def _rated(n: int, rng: np.random.Generator) -> RatedSegments:
    obs = rng.normal(size=(n, 50, OBS)).astype(np.float32)
    acts = rng.uniform(-1, 1, (n, 50, ACT)).astype(np.float32)
    segments = SegmentSet(obs, acts, np.zeros((n, 50), np.float32))
    return RatedSegments(segments, rng.integers(0, 7, n), RatingScale(10), {}, None, None)


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def updates(budget: int | None) -> tuple[float, int, object]:
    """CPU seconds and gradient steps of the track's ten updates; the last model."""
    rng = np.random.default_rng(0)
    update = make_updater(run_config("sac300k", "dmc/walker-walk", "r4", 0).replace(
        reward_update_steps=budget
    ))
    model, seconds, steps = None, 0.0, 0
    for n in range(10, 10 * ROUNDS + 1, 10):
        data = _rated(n, rng)
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model, row = update([data], model)
        seconds += time.process_time() - start
        steps += row["steps"]
    return seconds, steps, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle-rate", type=float, default=190.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    result: dict = {"updates": {}}
    for budget in (None, 100, 50):
        seconds, steps, model = updates(budget)
        result["updates"][str(budget)] = {"cpu_s": seconds, "steps": steps}
    box = spaces.Box(-1, 1, (ACT,))
    buffer = ReplayBuffer(STEPS, spaces.Box(-1, 1, (OBS,)), box, device="cpu")
    buffer.observations[:] = rng.normal(size=buffer.observations.shape)
    buffer.full = True
    score = model.predict_rewards
    result["relabel_cpu_s"] = _cpu(lambda: relabel_replay_buffer(buffer, score, box))
    result["pickle_buffer_cpu_s"] = _cpu(lambda: pickle.dumps(buffer))
    episodes = [
        Episode(
            rng.normal(size=(1000, OBS)).astype(np.float32),
            rng.uniform(-1, 1, (1000, ACT)).astype(np.float32),
            np.zeros(1000, np.float32),
            i,
        )
        for i in range(50)
    ]
    windows = segment_episodes(episodes, 50, 10)
    obs, acts = windows.obs, windows.acts
    result["query_per_window_cpu_s"] = _cpu(lambda: model.predict_returns(obs, acts))
    result["query_per_step_cpu_s"] = _cpu(lambda: window_returns(model, windows))
    one_obs, one_act = windows.obs[0, :1], windows.acts[0, :1]
    result["step_scoring_us"] = 1e6 * _cpu(
        lambda: [model.predict_rewards(one_obs, one_act) for _ in range(2000)]
    ) / 2000
    oracle_cpu = STEPS / args.oracle_rate
    fixed = ROUNDS * (
        result["relabel_cpu_s"] + result["pickle_buffer_cpu_s"] + result["query_per_step_cpu_s"]
    ) + STEPS * result["step_scoring_us"] / 1e6
    result["oracle_rate"] = args.oracle_rate
    result["whole_run_ratio"] = {
        budget: oracle_cpu / (oracle_cpu + fixed + row["cpu_s"])
        for budget, row in result["updates"].items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sac300k_round_cost.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
