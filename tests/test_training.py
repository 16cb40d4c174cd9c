import warnings

import numpy as np
import pytest
import torch

from ratingrl.feedback.segments import PreferencePairs, RatedSegments, RatingScale
from ratingrl.feedback.synthetic import linear_segments
from ratingrl.feedback.teachers import Bins, PreferenceTeacher, RatingTeacher
from ratingrl.rewards.methods import (
    R4,
    MultiTask,
    TrainingError,
    make_method,
    parse_method_spec,
    split_method_specs,
)
from ratingrl.rewards.metrics import kendall_tau
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig
from ratingrl.rewards.training import TrainerConfig, train_reward_model

FAST = TrainerConfig(
    epochs=25, batch_size=64, patience=25, net=RewardNetConfig(hidden=(32, 32), ensemble_size=2)
)


def rated(n=300, classes=4, seed=0):
    seg = linear_segments(n, seed=seed)
    teacher = RatingTeacher(Bins.quantile(classes, seg.true_returns))
    return teacher.rate_dataset(seg, np.random.default_rng(seed))


@pytest.mark.parametrize(
    "method",
    [
        make_method("rbrl"),
        R4(groups_per_batch=16),
        make_method("multitask"),
        MultiTask(weighting="equal"),
        make_method("regression"),
    ],
    ids=lambda m: f"{m.name}-{getattr(m, 'weighting', '')}",
)
def test_every_rating_method_learns_the_order_of_held_out_segments(method):
    result = train_reward_model(rated(), method, FAST)
    test = linear_segments(300, seed=99)
    pred = result.model.predict_returns(test.obs, test.acts).mean(0)
    assert kendall_tau(pred, test.true_returns) > 0.7
    assert result.best_val_score > 0.6
    assert result.history[0]["epoch"] == 1 and "val_accuracy" in result.history[-1]


def test_bradley_terry_learns_from_preferences():
    a, b = linear_segments(300, seed=1), linear_segments(300, seed=2)
    labels, answered = PreferenceTeacher().label(a, b, np.random.default_rng(0))
    pairs = PreferencePairs(a.subset(np.flatnonzero(answered)), b, labels)
    result = train_reward_model(pairs, make_method("bt"), FAST)
    test = linear_segments(300, seed=99)
    pred = result.model.predict_returns(test.obs, test.acts).mean(0)
    assert kendall_tau(pred, test.true_returns) > 0.7


def test_learned_multitask_weights_move():
    result = train_reward_model(rated(), make_method("multitask"), FAST)
    assert result.extra["log_vars"] != [0.0, 0.0]


def test_early_stopping_keeps_the_best_epoch():
    cfg = TrainerConfig(epochs=40, batch_size=32, patience=3, net=RewardNetConfig(hidden=(16,)))
    result = train_reward_model(rated(120), make_method("rbrl"), cfg)
    scores = [row["val_score"] for row in result.history]
    assert result.best_val_score == pytest.approx(max(scores))
    assert len(result.history) - result.best_epoch <= 3


def test_training_is_reproducible_from_the_seed():
    data = rated(150)
    a = train_reward_model(data, make_method("rbrl"), FAST).model
    b = train_reward_model(data, make_method("rbrl"), FAST).model
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_bootstrap_members_differ():
    result = train_reward_model(rated(), make_method("rbrl"), FAST)
    w = result.model.weights[0]
    assert not torch.allclose(w[0], w[1])


def test_bad_inputs_get_clear_errors():
    data = rated(100)
    one_class = RatedSegments(data.segments, np.zeros(len(data), dtype=int), RatingScale(4))
    with pytest.raises(TrainingError, match="only class \\[0\\]"):
        train_reward_model(one_class, make_method("r4"), FAST)
    with pytest.raises(TrainingError, match="unknown method 'r5'"):
        make_method("r5")
    with pytest.raises(TrainingError, match="cannot learn from rated segments"):
        train_reward_model(data, make_method("bt"), FAST)
    wrong = RewardEnsemble(3, 2, RewardNetConfig(hidden=(4,)))
    with pytest.raises(TrainingError, match="model expects obs/act dims"):
        train_reward_model(data, make_method("rbrl"), FAST, model=wrong)


def test_empty_class_warns_and_trains_on_present_classes():
    data = rated(200, classes=3)
    ratings = np.where(data.ratings == 1, 2, data.ratings)  # class 1 never used
    gap = RatedSegments(data.segments, ratings, RatingScale(3))
    with pytest.warns(UserWarning, match="rating classes \\[1\\] have no labels"):
        result = train_reward_model(gap, R4(groups_per_batch=16), FAST)
    assert result.best_val_score > 0.5


def test_reward_fn_signature_and_save_load(tmp_path):
    result = train_reward_model(rated(100), make_method("rbrl"), FAST)
    model = result.model
    fn = model.as_reward_fn()
    seg = linear_segments(3)
    obs, acts = seg.obs[:, 0], seg.acts[:, 0]
    rewards = fn(obs, acts, obs, np.zeros(3, dtype=bool))
    assert rewards.shape == (3,)
    model.save(tmp_path / "m.pt", method="rbrl")
    loaded, extra = RewardEnsemble.load(tmp_path / "m.pt")
    assert extra == {"method": "rbrl"}
    np.testing.assert_allclose(loaded.as_reward_fn()(obs, acts, obs, None), rewards, rtol=1e-6)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable ratingrl reward model"):
        RewardEnsemble.load(tmp_path / "junk.pt")


def test_no_warning_on_full_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_reward_model(rated(100), make_method("rbrl"), TrainerConfig(epochs=1, net=FAST.net))


def test_method_specs_name_variants():
    assert split_method_specs("r4, rbrl,r4[norm_penalty=0.05,regularization_strength=0.5]") == (
        "r4",
        "rbrl",
        "r4[norm_penalty=0.05,regularization_strength=0.5]",
    )
    name, overrides = parse_method_spec("multitask[weighting=equal,alpha=0.2]")
    assert make_method(name, **overrides) == MultiTask(weighting="equal", alpha=0.2)
    with pytest.raises(TrainingError, match="has no setting \\['margin'\\]"):
        make_method("r4", margin=1)
    with pytest.raises(TrainingError, match="is not key=value"):
        parse_method_spec("r4[fast]")
