"""The offline-policy example runs end to end (quick settings) and reports both runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offline_policy.py"


@pytest.mark.slow
def test_offline_policy_example(tmp_path):
    spec = importlib.util.spec_from_file_location("offline_policy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(tmp_path, quick=True)
    assert set(results) == {"r4", "oracle"}
    for method in results:
        assert (tmp_path / method / "summary.json").exists()
        assert (tmp_path / method / "policy.zip").exists()
    assert results["r4"]["learned_return_final"] is not None
