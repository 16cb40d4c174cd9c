"""The policy demo end to end at toy size: both runs, printed returns, the learning-curve PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ratingrl.experiments.policy_demo import PolicyDemoConfig, run_policy_demo
from ratingrl.rl.evaluation import eval_curve

torch.set_num_threads(1)


@pytest.mark.slow
def test_policy_demo_trains_both_runs_and_saves_the_curve(tmp_path, capsys):
    result = run_policy_demo(tmp_path, progress=False, config=PolicyDemoConfig.quick())
    assert set(result["runs"]) == {"oracle", "r4"}
    oracle, r4 = result["runs"]["oracle"], result["runs"]["r4"]
    assert oracle["learned_return"] is None and r4["labels"] == 20
    assert np.isfinite(r4["learned_return"]) and np.isfinite(r4["true_return"])
    png = tmp_path / "policy_curve.png"
    assert result["figure"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "true return" in out and "learned return" in out
    # the curve is read back from the CSVs and ends with the summary's final evaluation
    for run in (oracle, r4):
        curve = eval_curve(run["run_dir"])
        summary = json.loads((tmp_path / run["run_dir"] / "summary.json").read_text())
        assert curve["env_steps"][-1] == summary["env_steps"] == 700
        assert curve["true_return"][-1] == summary["true_return_final"]["mean"]
        assert len(curve["env_steps"]) == len(summary["evaluations"]) == 2
    assert np.isfinite(eval_curve(r4["run_dir"])["learned_return"][-1])
    json.dumps(result)  # the result is plain data (the CLI may print or save it)
