"""Reward methods as registered objects: the registry, user plugins, and the trainer's terms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ratingrl.feedback.io import save_segments
from ratingrl.feedback.pool import PoolSpec, pool_path
from ratingrl.feedback.segments import PreferencePairs
from ratingrl.feedback.synthetic import linear_segments
from ratingrl.feedback.teachers import Bins, PreferenceTeacher, RatingTeacher
from ratingrl.rewards import methods, training
from ratingrl.rewards.methods import (
    R4,
    BradleyTerry,
    MultiTask,
    RbRL,
    Regression,
    RewardMethod,
    TrainingError,
    load_plugins,
    make_method,
    method_class,
    parse_method_spec,
    register,
    registered_methods,
)
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.nets import RewardNetConfig
from ratingrl.rewards.training import (
    Term,
    TrainerConfig,
    train_mixed,
    train_reward_model,
    train_terms,
)

BUILT_IN = ("rbrl", "r4", "multitask", "bt", "regression")
FAST = TrainerConfig(
    epochs=20, batch_size=64, patience=20, net=RewardNetConfig(hidden=(32, 32), ensemble_size=2)
)
TINY = TrainerConfig(epochs=4, batch_size=32, net=RewardNetConfig(hidden=(8,), ensemble_size=2))

TOY_PLUGIN = '''
"""A user's own reward methods, registered outside the ratingrl package."""
from dataclasses import dataclass, field

import torch

from ratingrl.rewards.methods import Batch, RewardMethod, register


@register("toy_hinge")
@dataclass(frozen=True)
class ToyHinge(RewardMethod):
    """Pairwise hinge: a higher rating must come with a return larger by ``margin``."""

    margin: float = field(default=1.0, metadata={"help": "return gap between ratings"})

    def loss(self, batch: Batch) -> torch.Tensor:
        r, y = batch.returns, batch.labels.to(batch.returns)
        above = (y.unsqueeze(-1) > y.unsqueeze(-2)).to(r)
        gap = r.unsqueeze(-1) - r.unsqueeze(-2)
        return (torch.relu(self.margin - gap) * above).sum() / above.sum().clamp_min(1)


@register("toy_scaled")
@dataclass(frozen=True)
class ToyScaled(RewardMethod):
    """Regression to ``s * rating`` with a learned scale ``s``: an extra parameter."""

    def extra_parameters(self, data):
        return {"toy_scale": torch.ones(1, requires_grad=True)}

    def loss(self, batch: Batch) -> torch.Tensor:
        target = batch.params["toy_scale"] * batch.labels.to(batch.returns)
        return ((batch.returns - target) ** 2).mean()
'''


pytestmark = pytest.mark.usefixtures("isolated_registry")  # registries restored after each


@pytest.fixture
def toy_plugin(tmp_path):
    path = tmp_path / "my_methods.py"
    path.write_text(TOY_PLUGIN)
    return str(path)


def rated(n=300, classes=4, seed=0):
    seg = linear_segments(n, seed=seed)
    return RatingTeacher(Bins.quantile(classes, seg.true_returns)).rate_dataset(
        seg, np.random.default_rng(seed)
    )


def pairs(n=200, seed=1):
    a, b = linear_segments(n, seed=seed), linear_segments(n, seed=seed + 1)
    labels, answered = PreferenceTeacher().label(a, b, np.random.default_rng(seed))
    keep = np.flatnonzero(answered)
    return PreferencePairs(a.subset(keep), b.subset(keep), labels)


def held_out_tau(model) -> float:
    test = linear_segments(300, seed=99)
    return kendall_tau(model.predict_returns(test.obs, test.acts).mean(0), test.true_returns)


# -- the registry ------------------------------------------------------------------------------
def test_built_in_methods_are_registered_under_their_names():
    found = registered_methods()
    assert tuple(found)[:5] == BUILT_IN
    assert [found[n] for n in BUILT_IN] == [RbRL, R4, MultiTask, BradleyTerry, Regression]
    assert BradleyTerry.data_kind == "pairs" and R4.data_kind == "ratings"
    assert dict(methods.METHODS) == found  # the read-only view is live


def test_an_unknown_method_is_an_error_naming_the_registered_ones():
    with pytest.raises(TrainingError, match="unknown method 'r5'") as err:
        make_method("r5")
    assert all(repr(name) in str(err.value) for name in BUILT_IN)


def test_an_unknown_or_malformed_setting_is_an_error_naming_the_settings():
    with pytest.raises(TrainingError, match=r"method 'r4' has no setting \['margin'\]") as err:
        make_method("r4", margin=1)
    settings = "['groups_per_batch', 'loss_reduction', 'norm_penalty', 'penalty_params', "
    assert settings + "'regularization_strength']" in str(err.value)
    with pytest.raises(TrainingError, match="has no setting \\['name'\\]"):
        make_method("rbrl", name="r4")  # the name is not a setting
    with pytest.raises(TrainingError, match="setting kappa takes a number, got 'sharp'"):
        make_method("rbrl", kappa="sharp")
    with pytest.raises(TrainingError, match="multitask weighting 'both'"):
        make_method("multitask", weighting="both")


def test_specs_with_settings_make_methods():
    name, settings = parse_method_spec("r4[regularization_strength=0.25,groups_per_batch=10]")
    method = make_method(name, **settings)
    assert method == R4(regularization_strength=0.25, groups_per_batch=10)
    assert isinstance(method.groups_per_batch, int)


def test_a_method_carries_its_name_through_asdict_and_replace():
    method = make_method("r4", norm_penalty=0.05)
    assert dataclasses.asdict(method) == {
        "name": "r4",
        "regularization_strength": 1.0,
        "norm_penalty": 0.05,
        "groups_per_batch": 64,
        "loss_reduction": "mean",
        "penalty_params": "all",
    }
    changed = dataclasses.replace(method, groups_per_batch=10)
    assert changed.name == "r4" and changed.groups_per_batch == 10 and changed.norm_penalty == 0.05
    assert set(R4.settings()) == {
        "regularization_strength",
        "norm_penalty",
        "groups_per_batch",
        "loss_reduction",
        "penalty_params",
    }
    assert "margin" in R4.settings()["regularization_strength"].metadata["help"]


def test_registering_a_taken_name_needs_replace():
    @dataclasses.dataclass(frozen=True)
    class Other(RbRL):
        pass

    with pytest.raises(TrainingError, match="'rbrl' is already registered .*replace=True"):
        register("rbrl")(Other)
    assert method_class("rbrl") is RbRL
    register("rbrl")(RbRL)  # the same class again: harmless
    register("rbrl", replace=True)(Other)
    assert method_class("rbrl") is Other and make_method("rbrl").name == "rbrl"
    with pytest.raises(TrainingError, match="R4 is already registered as 'r4'"):
        register("r4_again")(R4)  # one class, one name: asdict must say which


def test_register_refuses_what_is_not_a_frozen_method_dataclass():
    class NotDecorated(RbRL):
        pass

    with pytest.raises(TrainingError, match="must be decorated with @dataclass\\(frozen=True\\)"):
        register("plain")(NotDecorated)
    with pytest.raises(TrainingError, match="is not a RewardMethod subclass"):
        register("dict")(dict)
    with pytest.raises(TrainingError, match="must be a word"):
        register("r4[x=1]")
    assert "plain" not in registered_methods()


def test_old_names_stay_importable_as_the_registered_classes():
    with pytest.warns(DeprecationWarning, match="now ratingrl.rewards.methods.R4"):
        assert training.R4Config is R4
    with pytest.warns(DeprecationWarning):
        assert training.RbRLConfig is RbRL and training.MultiTaskConfig is MultiTask
        assert training.BTConfig is BradleyTerry and training.RegressionConfig is Regression
        assert training.method_config is make_method and training.METHODS["r4"] is R4
        assert training.parse_method_spec is parse_method_spec
    with pytest.raises(AttributeError, match="no attribute 'R5Config'"):
        training.R5Config  # noqa: B018


# -- no fallback -------------------------------------------------------------------------------
def test_an_unknown_rating_config_is_refused_not_trained_as_regression():
    @dataclasses.dataclass(frozen=True)
    class HingeConfig:  # an old-style config object: it used to train with the regression loss
        margin: float = 1.0
        name: str = "hinge"

    with pytest.raises(TrainingError, match="method must be a RewardMethod.*HingeConfig"):
        train_reward_model(rated(100), HingeConfig(), TINY)

    @dataclasses.dataclass(frozen=True)
    class NoLoss(RewardMethod):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoLoss()


# -- a user's own method -----------------------------------------------------------------------
def test_a_plugin_file_registers_a_method_that_trains(toy_plugin):
    with pytest.raises(TrainingError, match="unknown method 'toy_hinge'"):
        make_method("toy_hinge")
    (module,) = load_plugins([toy_plugin])
    assert load_plugins([toy_plugin]) == [module]  # loading again is a no-op
    name, settings = parse_method_spec("toy_hinge[margin=0.5]")
    method = make_method(name, **settings)
    assert method.name == "toy_hinge" and method.margin == 0.5
    result = train_reward_model(rated(), method, FAST)
    assert held_out_tau(result.model) > 0.7
    assert result.best_val_score > 0.5
    assert result.extra["method"] == {"name": "toy_hinge", "margin": 0.5}


def test_a_plugins_extra_parameters_are_trained_and_reported(toy_plugin):
    load_plugins([toy_plugin])
    result = train_reward_model(rated(), make_method("toy_scaled"), FAST)
    assert held_out_tau(result.model) > 0.7
    assert result.extra["toy_scale"] != [1.0]


def test_a_plugin_can_be_a_module_on_the_path(tmp_path, monkeypatch):
    (tmp_path / "my_dotted_methods.py").write_text(TOY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["my_dotted_methods"])
    assert method_class("toy_hinge").__module__ == "my_dotted_methods"


def test_a_plugin_that_cannot_be_imported_gets_a_clear_error(tmp_path, toy_plugin):
    with pytest.raises(TrainingError, match="plugin 'no_such_module_x' cannot be imported"):
        load_plugins(["no_such_module_x"])
    with pytest.raises(TrainingError, match="missing.py'?: no such file"):
        load_plugins([str(tmp_path / "missing.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(TrainingError, match="broken.py' cannot be imported: RuntimeError: boom"):
        load_plugins([str(broken)])
    with pytest.raises(TrainingError, match="a list of modules"):
        load_plugins(toy_plugin)
    load_plugins([toy_plugin])
    clash = tmp_path / "clash.py"
    clash.write_text(TOY_PLUGIN)  # a second file claiming the same names
    with pytest.raises(TrainingError, match="'toy_hinge' is already registered"):
        load_plugins([str(clash)])


def _synthetic_pool(tmp_path) -> tuple[PoolSpec, str]:
    spec = PoolSpec("synthetic-v0", horizon=10, max_episode_steps=10)
    path = pool_path(spec, tmp_path)
    save_segments(linear_segments(400, seed=3), path, spec=spec.to_dict())
    return spec, str(path)


def _fidelity_config(spec: PoolSpec, tmp_path, **kwargs):
    from ratingrl.experiments.fidelity import FidelityConfig

    trainer = TrainerConfig(
        epochs=15, batch_size=64, net=RewardNetConfig(hidden=(32, 32), ensemble_size=2)
    )
    return FidelityConfig(
        env_id=spec.env_id, pool=spec, cache_dir=str(tmp_path), trainer=trainer, **kwargs
    )


def test_the_fidelity_benchmark_runs_a_plugin_method(tmp_path, toy_plugin):
    from ratingrl.experiments.fidelity import _Job, run_one

    spec, pool_file = _synthetic_pool(tmp_path)
    with pytest.raises(ValueError, match="unknown method 'toy_hinge'"):
        _fidelity_config(spec, tmp_path, methods=("toy_hinge",))
    config = _fidelity_config(
        spec, tmp_path, methods=("toy_hinge[margin=0.5]", "bt"), plugins=(toy_plugin,)
    )
    assert config.method("toy_hinge[margin=0.5]").margin == 0.5
    row = run_one(config, pool_file, _Job("toy_hinge[margin=0.5]", 150, 4, 0.0, 0))
    assert row["kendall_tau"] > 0.5 and "pair_accuracy" not in row
    pair_row = run_one(config, pool_file, _Job("bt", 150, 4, 0.0, 0))  # pairs, by data kind
    assert pair_row["pair_accuracy"] > 0.5


@pytest.mark.slow
def test_spawned_fidelity_workers_load_the_plugins(tmp_path, toy_plugin):
    from ratingrl.experiments.fidelity import run_fidelity

    spec, _ = _synthetic_pool(tmp_path)
    config = _fidelity_config(
        spec, tmp_path, methods=("toy_hinge",), ratings=(150,), seeds=2, plugins=(toy_plugin,)
    )
    assert config.workers == 2
    report = run_fidelity(config, progress=False)
    assert [r["method"] for r in report["runs"]] == ["toy_hinge", "toy_hinge"]
    assert all(r["kendall_tau"] > 0.5 for r in report["runs"])
    assert tuple(report["config"]["plugins"]) == (toy_plugin,)


# -- one trainer over terms --------------------------------------------------------------------
def _same_parameters(a, b) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_mixed_training_is_two_terms():
    ratings, prefs = rated(200), pairs()
    mixed = train_mixed(ratings, prefs, RbRL(), TINY, preference_weight=0.5)
    terms = train_terms([Term(RbRL(), ratings), Term(BradleyTerry(), prefs, 0.5)], TINY)
    _same_parameters(mixed.model, terms.model)
    assert mixed.history == terms.history
    row = mixed.history[-1]
    assert set(row) == {
        "epoch",
        "loss",
        "val_score",
        "val_accuracy",
        "val_rating_tau",
        "val_pair_accuracy",
    }
    assert row["val_score"] == pytest.approx((row["val_rating_tau"] + row["val_pair_accuracy"]) / 2)
    assert mixed.extra["preference_weight"] == 0.5
    assert [t["weight"] for t in mixed.extra["terms"]] == [1.0, 0.5]


def test_single_source_training_is_one_term_of_weight_one():
    data = rated(150)
    one = train_reward_model(data, R4(groups_per_batch=8), TINY)
    term = train_terms([Term(R4(groups_per_batch=8), data)], TINY)
    _same_parameters(one.model, term.model)
    assert one.history == term.history and set(one.history[0]) == {
        "epoch",
        "loss",
        "val_score",
        "val_accuracy",
    }


def test_terms_of_one_kind_get_numbered_scores_and_a_mean():
    terms = [Term(RbRL(), rated(150)), Term(R4(groups_per_batch=8), rated(150, seed=4), 2.0)]
    result = train_terms([*terms, Term(BradleyTerry(), pairs())], TINY)
    row = result.history[0]
    keys = ("val_rating_tau_0", "val_rating_tau_1", "val_pair_accuracy")
    assert all(k in row for k in keys)
    assert row["val_score"] == pytest.approx(np.mean([row[k] for k in keys]))


def test_terms_that_do_not_fit_are_refused():
    ratings = rated(100)
    with pytest.raises(TrainingError, match="method 'bt' cannot learn from rated segments"):
        Term(BradleyTerry(), ratings)
    with pytest.raises(TrainingError, match="method 'r4' cannot learn from preference pairs"):
        Term(R4(), pairs())
    with pytest.raises(TrainingError, match="Term.weight must be finite and >= 0, got -1"):
        Term(RbRL(), ratings, -1)
    with pytest.raises(TrainingError, match="at least one term"):
        train_terms([], TINY)
    with pytest.raises(TrainingError, match="mixed training needs a rating method.*'bt'"):
        train_mixed(ratings, pairs(), BradleyTerry(), TINY)
    other = rated(100)
    seg = linear_segments(100, obs_dim=3)
    narrow = RatingTeacher(Bins.quantile(4, seg.true_returns)).rate_dataset(
        seg, np.random.default_rng(0)
    )
    with pytest.raises(TrainingError, match="term 1 \\(rated segments\\) has obs/act dims"):
        train_terms([Term(RbRL(), other), Term(RbRL(), narrow)], TINY)
