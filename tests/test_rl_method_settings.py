"""A method's own settings (``--method 'multitask[alpha=1]'``) reach the reward updates."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.rewards.methods import R4, MultiTask, RbRL
from ratingrl.rl.builders import R4_ONLINE_GROUPS, make_method, make_online_method
from ratingrl.rl.config import EARLIER_LOSS_FORMS, RunConfig, upgrade_config
from ratingrl.rl.validation import RunError

runner = CliRunner()


def test_settings_replace_the_defaults_of_the_runs_own_method():
    config = RunConfig(method="multitask", method_settings={"alpha": 1.0, "kappa": 10.0})
    assert make_online_method(config) == MultiTask(alpha=1.0, kappa=10.0)
    assert make_method(RunConfig(method="rbrl")) == RbRL()
    # the Bradley-Terry half of a mixed run keeps its own defaults
    assert make_method(config, "bt").name == "bt"


def test_r4_online_batches_keep_ten_groups_unless_a_setting_says_otherwise():
    assert make_online_method(RunConfig(method="r4")).groups_per_batch == R4_ONLINE_GROUPS
    mine = RunConfig(method="r4", method_settings={"groups_per_batch": 3, "norm_penalty": 0.05})
    assert make_online_method(mine) == R4(groups_per_batch=3, norm_penalty=0.05)


@pytest.mark.parametrize(
    ("method", "settings", "message"),
    [
        ("rbrl", {"alpah": 1.0}, r"rbrl\[alpah=1.0\].*no setting \['alpah'\].*kappa"),
        ("oracle", {"kappa": 1.0}, "the oracle has no settings"),
        ("bt", {"kappa": 1.0}, "no setting"),
    ],
)
def test_unknown_settings_are_refused_by_name(method, settings, message):
    with pytest.raises(RunError, match=message):
        RunConfig(method=method, method_settings=settings).validate()


def test_a_run_stored_before_settings_existed_resumes_as_it_ran(tmp_path):
    stored = {
        k: v for k, v in RunConfig().to_dict().items() if k not in ("method_settings", "version")
    }
    # R4 (the default method) ran in the loss forms used before the released ones became default
    assert RunConfig.from_dict(upgrade_config(stored)).method_settings == EARLIER_LOSS_FORMS["r4"]
    # a method whose loss never changed gets no settings
    bt = RunConfig.from_dict(upgrade_config({**stored, "method": "bt"}))
    assert bt.method_settings == {}
    # multi-task runs of that time used alpha = 1/H (None), the default then
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**stored, "method": "multitask"}))
    config = RunConfig.load(path)
    assert config.method_settings == {"alpha": None}
    assert make_online_method(config).alpha is None
    assert MultiTask().alpha == 1.0


def test_cli_parses_bracketed_settings_and_shows_them_in_the_plan(tmp_path):
    args = ["train", "--env", "dmc/cartpole-balance", "--steps", "400000", "--check"]
    result = runner.invoke(app, [*args, "--method", "multitask[alpha=1,weighting=equal]"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["method"]["alpha"] == 1 and plan["method"]["weighting"] == "equal"
    assert plan["method"]["name"] == "multitask"
    bad = runner.invoke(app, [*args, "--method", "rbrl[alpha=1]", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no setting ['alpha']" in bad.output
    assert not (tmp_path / "x").exists()
