"""Benchmark soft_rank / soft_sort (forward + backward): ours vs torchsort vs torch.sort.

Run from the repository root::

    .venv/bin/python benchmarks/bench_soft_rank.py

All candidates run in the same process on the same float32 inputs. Timings are interleaved
(each repeat times every candidate once, in turn) so that load from other processes on a shared
machine hits them alike, and the median over repeats after a warm-up is reported. torch.sort
forward + backward is given for scale: sorting is the first step of every soft operator
(torchsort uses torch.sort; ours uses np.argsort, which is faster on CPU). torchsort is
optional; without it its columns read "n/a". Other options: --threads 1 --clock cpu measures
CPU time, which is steadier when other processes share the machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import torch

from ratingrl.rewards.soft_rank import _import_torchsort, soft_rank, soft_sort

SIZES = ((64, 4096), (1, 4096), (256, 256), (64, 64))
Op = Callable[[torch.Tensor], torch.Tensor]


def _candidates(op: str, strength: float) -> dict[str, Op | None]:
    """The functions timed for one operator; None marks an unavailable one."""
    ours = soft_rank if op == "soft_rank" else soft_sort
    torchsort = _import_torchsort()
    # torchsort is called directly (not through our argument checks) to time it as shipped.
    theirs = getattr(torchsort, op) if torchsort is not None else None
    return {
        "ours": lambda x: ours(x, strength, backend="torch"),
        "torchsort": (lambda x: theirs(x, regularization_strength=strength)) if theirs else None,
        "torch.sort": lambda x: torch.sort(x, dim=1).values,
    }


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time_once(fn: Op, x: torch.Tensor, cotangent: torch.Tensor, clock: str) -> float:
    """Seconds for one forward + backward pass, wall-clock or CPU time of this process."""
    now = CLOCKS[clock]
    x.grad = None
    start = now()
    fn(x).backward(cotangent)
    return now() - start


def _bench_size(op: str, rows: int, n: int, args: argparse.Namespace) -> dict[str, float]:
    """Median milliseconds per candidate for one input size."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n, generator=generator).requires_grad_()
    cotangent = torch.randn(rows, n, generator=generator)
    fns = {name: fn for name, fn in _candidates(op, args.strength).items() if fn is not None}
    for _ in range(args.warmup):
        for fn in fns.values():
            _time_once(fn, x, cotangent, args.clock)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            samples[name].append(_time_once(fn, x, cotangent, args.clock))
    return {name: 1e3 * statistics.median(times) for name, times in samples.items()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--strength", type=float, default=1.0, help="regularization_strength")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of the process (all threads), which other "
        "processes on a shared machine disturb less",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torchsort = _import_torchsort()
    torchsort_version = metadata.version("torchsort") if torchsort else "not installed"
    print(f"date: {datetime.date.today().isoformat()}")
    print(f"machine: nproc={os.cpu_count()}, CPU={_cpu_model()}")
    print(
        f"torch {torch.__version__} (threads={torch.get_num_threads()}), "
        f"torchsort {torchsort_version}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        f"float32 randn inputs, regularization_strength={args.strength}, forward + backward, "
        f"{args.clock} clock, median of {args.repeats} after {args.warmup} warm-up\n"
    )
    print("| op | batch x n | ours (ms) | torchsort (ms) | ours / torchsort | torch.sort (ms) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for op in ("soft_rank", "soft_sort"):
        for rows, n in SIZES:
            ms = _bench_size(op, rows, n, args)
            ts = ms.get("torchsort")
            ratio = "n/a" if ts is None else f"{ms['ours'] / ts:.2f}x"
            print(
                f"| {op} | {rows} x {n} | {_fmt(ms['ours'])} | {_fmt(ts)} | {ratio} "
                f"| {_fmt(ms['torch.sort'])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
