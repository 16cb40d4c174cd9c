"""Every recipe in examples/ runs (small settings) and gives a sensible answer."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratings_to_reward_example(tmp_path):
    taus = load("ratings_to_reward").main(episodes=9, epochs=15, out=str(tmp_path / "r.parquet"))
    assert set(taus) == {"r4", "rbrl"}
    assert all(t > 0.3 for t in taus.values()), taus
    assert (tmp_path / "r.parquet").exists()


def test_my_reward_method_example_is_a_plugin_whose_method_learns(isolated_registry):
    from ratingrl.rewards.methods import load_plugins, registered_methods

    (module,) = load_plugins([str(EXAMPLES / "my_reward_method.py")])  # as --plugins does
    assert "hinge" in registered_methods()
    taus = module.main(episodes=9, epochs=10)
    assert set(taus) == {"hinge", "r4"} and taus["hinge"] > 0.5, taus
