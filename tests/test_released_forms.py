"""Where the papers are silent, R4 and RbRL default to their authors' released code; the forms
ratingrl used before 2026-12-03 stay reachable by settings. Expected numbers are worked out by
hand (see the comments) or by an independent float reference of the released behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ratingrl.rewards import losses
from ratingrl.rewards.methods import (
    R4,
    Batch,
    DataInfo,
    RbRL,
    TrainingError,
    make_method,
    parse_method_spec,
)
from ratingrl.rewards.nets import RewardEnsemble, RewardNetConfig

# two groups of m = 2: group A (0, 0.5) has soft ranks (1.25, 1.75) at eps 1 (the projection of
# (0, 0.5) onto {r1 + r2 = 3}), targets (1, 2): squared errors 1/16 each; group B (3, 0) is
# ranked backwards, hard ranks (2, 1) vs (1, 2): squared errors 1 each. Total 2.125.
PRED = [[0.0, 0.5], [3.0, 0.0]]
LABELS = torch.tensor([[0, 1], [0, 1]])


# -- R4: the reduction ---------------------------------------------------------------------------
def test_rmse_mean_is_the_mean_over_every_entry_and_sum_per_group_m_times_it():
    pred = torch.tensor(PRED, dtype=torch.float64)
    assert losses.rmse_loss(pred, LABELS, 1.0, "mean").item() == pytest.approx(2.125 / 4)
    assert losses.rmse_loss(pred, LABELS, 1.0, "sum_per_group").item() == pytest.approx(2.125 / 2)
    assert losses.rmse_loss(pred, LABELS).item() == pytest.approx(2.125 / 4)  # the default


def test_rmse_gradients_by_hand_and_the_factor_m_on_random_groups():
    pred = torch.tensor(PRED, dtype=torch.float64, requires_grad=True)
    losses.rmse_loss(pred, LABELS, 1.0, "mean").backward()
    # group A is inside the permutahedron: d r / d theta projects onto sum-zero vectors, and
    # dL/dr = 2 (r - t) / 4 = (1/8, -1/8); group B sits on a vertex, where soft ranks are flat
    torch.testing.assert_close(pred.grad, torch.tensor([[0.125, -0.125], [0.0, 0.0]]).double())

    g = torch.Generator().manual_seed(3)
    for m in (3, 4, 6):
        x = torch.randn(2, 8, m, generator=g, dtype=torch.float64)  # [E, G, m]
        y = torch.stack([torch.randperm(m, generator=g) for _ in range(16)]).reshape(2, 8, m)
        mean, summed = (losses.rmse_loss(x, y, 0.5, r) for r in ("mean", "sum_per_group"))
        assert summed.item() == pytest.approx(m * mean.item(), rel=1e-12)


def test_rmse_refuses_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduction 'median'"):
        losses.rmse_loss(torch.zeros(1, 2), LABELS[:1], reduction="median")


# -- R4: what the penalty sums -------------------------------------------------------------------
def _constant_model() -> RewardEnsemble:
    """One member, 2 inputs -> 2 hidden -> 1: weights of ones, biases of twos."""
    model = RewardEnsemble(1, 1, RewardNetConfig(hidden=(2,), ensemble_size=1))
    with torch.no_grad():
        for w in model.weights:
            w.fill_(1.0)
        for b in model.biases:
            b.fill_(2.0)
    return model


def _batch(model: RewardEnsemble, returns: torch.Tensor, labels: torch.Tensor) -> Batch:
    flat = labels.reshape(-1).numpy()
    data = DataInfo("ratings", flat, np.arange(len(flat)), horizon=1, n_classes=2)
    return Batch(returns, labels, model, data, {})


def test_r4_penalty_sums_every_parameter_by_default_or_only_the_weights():
    model = _constant_model()
    # ||W1|| = sqrt(4) = 2, ||W2|| = sqrt(2), ||b1|| = sqrt(8), ||b2|| = 2
    weights_only, biases = 2 + math.sqrt(2), math.sqrt(8) + 2
    returns = torch.tensor([PRED], dtype=torch.float64)  # [E=1, G=2, m=2]
    labels = LABELS.unsqueeze(0)
    batch = _batch(model, returns, labels)
    released = R4(norm_penalty=0.1).loss(batch)
    assert released.item() == pytest.approx(2.125 / 4 + 0.1 * (weights_only + biases))
    old = R4(norm_penalty=0.1, loss_reduction="sum_per_group", penalty_params="weights")
    assert old.loss(batch).item() == pytest.approx(2.125 / 2 + 0.1 * weights_only)
    # the penalty's gradient reaches the biases only when they are in it
    model.zero_grad()
    old.loss(batch).backward()
    assert all(b.grad is None or not b.grad.any() for b in model.biases)
    model.zero_grad()
    R4(norm_penalty=0.1).loss(batch).backward()
    assert all(b.grad.abs().sum() > 0 for b in model.biases)


def test_the_penalty_takes_one_norm_per_member_of_biases_too():
    bias = torch.tensor([[[3.0, 4.0]], [[0.0, 0.0]]])  # [E=2, 1, 2]: norms 5 and 0
    assert losses.weight_norm_penalty([bias]).item() == pytest.approx(2.5)


# -- RbRL: the boundaries ------------------------------------------------------------------------
def _released_rbrl(pred: torch.Tensor, labels: list[int], n: int, kappa: float) -> torch.Tensor:
    """The released behaviour, independently: boundaries read out as Python floats (constants),
    an empty class's upper boundary 0 where nothing lies below it."""
    x = (pred - pred.min()) / (pred.max() - pred.min())
    ordered = sorted(x.tolist())
    cumulative = np.cumsum([labels.count(c) for c in range(n)])
    inner = [ordered[c - 1] if c > 0 else 0.0 for c in cumulative[:-1]]
    bounds = torch.tensor([0.0, *inner, 1.0], dtype=pred.dtype)
    logits = -kappa * (x[:, None] - bounds[:-1]) * (x[:, None] - bounds[1:])
    return F.cross_entropy(logits, torch.tensor(labels))


def test_rbrl_boundaries_are_constants_by_default_and_pass_gradient_on_request():
    # x = (0, .25, .5, 1); two labels of class 0 put b1 at x1 = .25, set by segment 1 alone
    pred = torch.tensor([0.0, 1.0, 2.0, 4.0], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    released = losses.rbrl_logits(pred, labels, 2, kappa=1.0)
    assert released[2, 0].item() == pytest.approx(-0.5 * (0.5 - 0.25))
    (grad,) = torch.autograd.grad(released[2, 0], pred)
    assert grad[1].item() == 0.0  # segment 2's logit sees segment 1 only through b1
    old = losses.rbrl_logits(pred, labels, 2, kappa=1.0, boundary_gradient=True)
    (grad,) = torch.autograd.grad(old[2, 0], pred)
    # d/db1 of -(x - 0)(x - b1) is x = .5, and db1/dp1 = 1 / (p3 - p0) = .25
    assert grad[1].item() == pytest.approx(0.125)


@pytest.mark.parametrize("labels", [[0, 1, 2, 1, 0, 2, 2, 1], [1, 1, 2, 2, 1, 2, 1, 2]])
def test_rbrl_default_matches_the_released_form_value_and_gradient(labels):
    """The second case lacks the lowest class: the released code wraps ``np_pred[-1]`` to the
    maximum there; ours gives class 0 a zero-width interval at 0, and still learns."""
    base = torch.tensor([0.3, -1.2, 2.5, 0.1, -0.7, 1.9, 3.3, 0.4], dtype=torch.float64)
    ref, ours, old = (base.clone().requires_grad_(True) for _ in range(3))
    expected = _released_rbrl(ref, labels, 3, 30.0)
    expected.backward()
    got = losses.rbrl_loss(ours, torch.tensor(labels), 3)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(ours.grad, ref.grad)
    before = losses.rbrl_loss(old, torch.tensor(labels), 3, boundary_gradient=True)
    before.backward()
    assert before.item() == pytest.approx(got.item(), rel=1e-12)  # same value, other gradient
    assert (old.grad - ours.grad).abs().max() > 1e-3
    assert torch.isfinite(ours.grad).all() and torch.isfinite(old.grad).all()


def test_rbrl_without_the_lowest_class_keeps_a_zero_width_interval_and_the_order():
    labels = torch.tensor([1, 1, 2, 2])
    x = torch.tensor([0.0, 0.1, 0.8, 1.0])
    torch.testing.assert_close(
        losses.rbrl_boundaries(x, labels, 3), torch.tensor([0.0, 0.0, 0.1, 1.0])
    )
    right = torch.tensor([0.0, 0.1, 2.0, 2.1])
    assert losses.rbrl_loss(right, labels, 3) < losses.rbrl_loss(right.flip(0), labels, 3)


# -- the settings --------------------------------------------------------------------------------
def test_defaults_are_the_released_forms():
    assert (R4().loss_reduction, R4().penalty_params) == ("mean", "all")
    assert RbRL().boundary_gradient is False
    for key in ("loss_reduction", "penalty_params"):
        assert "released" in R4.settings()[key].metadata["help"]
    assert "released" in RbRL.settings()["boundary_gradient"].metadata["help"]


def _from_spec(spec: str):
    name, settings = parse_method_spec(spec)
    return make_method(name, **settings)


def test_the_old_forms_are_one_spec_away():
    old_r4 = _from_spec("r4[loss_reduction=sum_per_group,penalty_params=weights]")
    assert old_r4 == R4(loss_reduction="sum_per_group", penalty_params="weights")
    for text, value in [("true", True), ("True", True), ("false", False), ("FALSE", False)]:
        assert _from_spec(f"rbrl[boundary_gradient={text}]") == RbRL(boundary_gradient=value)
    assert make_method("rbrl", boundary_gradient=True).boundary_gradient is True  # from JSON


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("rbrl", {"boundary_gradient": "maybe"}, "boundary_gradient takes true or false, got 'm"),
        ("rbrl", {"boundary_gradient": 1}, "boundary_gradient takes true or false, got 1"),
        ("r4", {"loss_reduction": "sum"}, r"loss_reduction 'sum' not in \('mean', 'sum_per_"),
        ("r4", {"penalty_params": "biases"}, r"penalty_params 'biases' not in \('all', 'weig"),
    ],
)
def test_bad_values_are_refused_by_name(name, settings, message):
    with pytest.raises(TrainingError, match=message):
        make_method(name, **settings)


def test_direct_construction_checks_too():
    with pytest.raises(TrainingError, match="boundary_gradient takes true or false"):
        RbRL(boundary_gradient="true")
    with pytest.raises(TrainingError, match="loss_reduction"):
        R4(loss_reduction="sum")


def test_a_run_can_ask_for_the_old_rbrl_form_on_the_command_line():
    import json

    from typer.testing import CliRunner

    from ratingrl.cli import app

    args = ["train", "--env", "dmc/cartpole-balance", "--steps", "400000", "--check"]
    result = CliRunner().invoke(app, [*args, "--method", "rbrl[boundary_gradient=true]"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["method"]["boundary_gradient"] is True
    result = CliRunner().invoke(app, [*args, "--method", "r4"])
    plan = json.loads(result.output)["method"]
    assert (plan["loss_reduction"], plan["penalty_params"]) == ("mean", "all")
