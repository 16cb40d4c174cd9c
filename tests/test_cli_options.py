"""``ratingrl train``'s options are the run configuration's fields: each is in ``--help`` and
settable by its option and by ``--set``; ``--config`` and precedence; ``--resume`` refusals."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from typer.testing import CliRunner

from ratingrl.cli import app
from ratingrl.cli.options import OptionError, parse_value
from ratingrl.rl.config import RunConfig, flag_of

runner = CliRunner()
FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
HINTS = typing.get_type_hints(RunConfig)


def _other_value(name: str):
    """A value of field ``name`` different from its default, and how it is typed."""
    default = getattr(RunConfig(), name)
    tp, optional = HINTS[name], False
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        tp, optional = [a for a in typing.get_args(tp) if a is not type(None)][0], True
    if typing.get_origin(tp) is tuple:
        element = typing.get_args(tp)[0]
        value = {int: (3, 5), float: (1.5, 2.5), str: ("a", "b")}[element]
        return value, ",".join(str(v) for v in value)
    if tp is dict:
        return {"alpha": 2}, json.dumps({"alpha": 2})
    if tp is bool:
        return (not default), str(not default).lower()
    if tp is int:
        value = 7 if default is None else default + 1
    elif tp is float:
        value = 0.25 if default in (None, 0.0) else default * 2
    else:
        value = "something-else"
    assert value != default or optional
    return value, str(value)


def _show(*args: str) -> dict:
    result = runner.invoke(app, ["train", *args, "--show-config"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_field_is_in_the_help_with_its_text():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for field in dataclasses.fields(RunConfig):
        if field.name == "method_settings":  # set in brackets after --method, or with --set
            assert "brackets" in text
            continue
        assert flag_of(field.name) in text, field.name
        first_words = " ".join(field.metadata["help"].split()[:3])
        assert first_words in text, (field.name, first_words)


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_settable_by_its_option_and_by_set(name):
    value, text = _other_value(name)
    expected = list(value) if isinstance(value, tuple) else value
    by_set = _show("--set", f"{name}={text}")
    assert by_set[name] == expected
    if name != "method_settings":
        by_option = _show(flag_of(name), text)
        assert by_option[name] == expected
        assert {k: v for k, v in by_option.items() if k != name} == {
            k: v for k, v in RunConfig().to_dict().items() if k != name
        }  # nothing else moved


def test_config_file_then_options_then_set(tmp_path):
    saved = RunConfig(env_id="Pendulum-v1", total_steps=5000, seed=3, net_arch=(16, 16))
    path = tmp_path / "config.json"
    saved.save(path)
    shown = _show("--config", str(path), "--seed", "4", "--set", "seed=5", "--set", "n_envs=2")
    assert shown["env_id"] == "Pendulum-v1" and shown["total_steps"] == 5000
    assert shown["net_arch"] == [16, 16]  # kept from the file: the option was not given
    assert shown["seed"] == 5 and shown["n_envs"] == 2  # --set has the last word
    method = _show("--config", str(path), "--method", "multitask[alpha=1]")
    assert method["method"] == "multitask" and method["method_settings"] == {"alpha": 1}


def test_bad_values_are_one_line_errors_naming_the_option(tmp_path):
    cases = [
        (["--set", "seeed=1"], "no field 'seeed'"),
        (["--set", "seed"], "takes key=value"),
        (["--set", "seed=abc"], "--set seed takes a int"),
        (["--net-arch", "64,x"], "--net-arch takes a int"),
        (["--set", "method_settings=[1]"], "JSON object"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "x"), "--check"])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_resume_takes_no_options_that_would_change_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    RunConfig(env_id="Pendulum-v1").save(run / "config.json")
    result = runner.invoke(app, ["train", "--resume", str(run), "--seed", "3"])
    assert result.exit_code == 2 and "drop ['seed']" in result.output
    assert "--resume continues a run as it was configured" in result.output
    assert json.loads((run / "config.json").read_text())["seed"] == 0  # nothing rewritten


def test_parse_value_reads_what_the_options_write():
    assert parse_value(tuple[int, ...], "64,64", "--x") == (64, 64)
    assert parse_value(tuple[int, ...], "[3, 4]", "--x") == (3, 4)
    assert parse_value(tuple[float, float] | None, "", "--x") is None
    assert parse_value(int | None, "none", "--x") is None
    assert parse_value(float | None, "0.5", "--x") == 0.5
    with pytest.raises(OptionError, match="--x takes a float"):
        parse_value(float, "high", "--x")


def test_resume_of_a_run_written_before_versioned_configs_says_so_and_finishes(tmp_path):
    import shutil
    from pathlib import Path

    run = tmp_path / "ppo_r4"
    shutil.copytree(Path(__file__).parent / "data" / "runs_v1" / "ppo_r4", run)
    result = runner.invoke(app, ["train", "--resume", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "written by an earlier ratingrl (configuration version 1)" in text
    assert "20 labels; 1024 steps" in text
    assert "version" not in json.loads((run / "config.json").read_text())  # left as it was
