"""Time the policy demo as ``ratingrl demo`` runs it; write ``benchmarks/results/policy_demo.json``.

.venv/bin/python benchmarks/policy_demo_timing.py
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from ratingrl.experiments.policy_demo import run_policy_demo

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    torch.set_num_threads(1)
    load = os.getloadavg()
    started = time.perf_counter()
    cpu = time.process_time()
    result = run_policy_demo(ROOT / "runs" / "policy_demo", progress=False)
    result["cpu_time_s"] = time.process_time() - cpu
    result["measured"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "wall_time_s": time.perf_counter() - started,
    }
    out = ROOT / "benchmarks" / "results" / "policy_demo.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
