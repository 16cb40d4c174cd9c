"""The ordinal recipe in examples/ runs at small settings and gives sensible answers."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ordinal_rarl.py"


def _load():
    spec = importlib.util.spec_from_file_location("ordinal_rarl", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ordinal_example_runs_and_learns_the_ordering() -> None:
    example = _load()
    exact, close, malformed = example.text_rewards()
    assert exact > close > malformed == 0.0
    out = example.main(warm_steps=60, steps=8, images_per_task=300)
    assert set(out) == {"before", "after"}
    for metrics in out.values():
        assert set(metrics) == {"mae", "accuracy", "kendall_tau", "query_tau"}
        assert metrics["kendall_tau"] > 0.4  # far above chance (0) after a short warm start
        assert metrics["mae"] < 2.5  # chance level (uniform guesses) is 3.3
