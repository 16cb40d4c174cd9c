"""GRPO and response mutation on tabular policies whose behaviour can be predicted exactly."""

import copy
from functools import partial

import numpy as np
import pytest
import torch

from ratingrl.ordinal.grpo import (
    GRPOBatch,
    GRPOConfig,
    TwoStageSchedule,
    array_reward_fn,
    group_advantages,
    grpo_loss,
    grpo_step,
    train_grpo,
)
from ratingrl.ordinal.mutation import MutationConfig, mutate_groups, zero_variance_groups
from ratingrl.ordinal.rewards import regression_scores


class TablePolicy(torch.nn.Module):
    """B queries of N items, each item an independent categorical over V values."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone().float())

    def sample(self, query, num_samples, generator):
        b, n, v = self.logits.shape
        probs = self.logits.softmax(-1).view(b * n, v)
        draws = torch.multinomial(probs, num_samples, True, generator=generator)
        return draws.view(b, n, num_samples).transpose(1, 2)

    def log_probs(self, query, answers):
        logp = self.logits.log_softmax(-1)[:, None].expand(-1, answers.shape[1], -1, -1)
        return torch.gather(logp, 3, answers[..., None])[..., 0]


def _reg_batch(targets: np.ndarray, delta: float = 3.0) -> GRPOBatch:
    fn = array_reward_fn(partial(regression_scores, delta=delta), targets)
    return GRPOBatch(None, fn, torch.as_tensor(targets, dtype=torch.long))


def test_group_advantages_are_standardised_per_group_and_zero_for_flat_groups() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(5, 8, generator=gen)
    rewards[3] = 0.1 + 0.2  # equal rewards whose float mean is not exactly 0.3
    adv = group_advantages(rewards, eps=0.0)
    live = [0, 1, 2, 4]
    torch.testing.assert_close(adv[live].mean(1), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(adv[live].std(1, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)
    assert torch.equal(adv[3], torch.zeros(8))
    # Ordering within a group is preserved.
    assert torch.equal(adv[0].argsort(), rewards[0].argsort())


def test_loss_gradient_raises_the_probability_of_above_average_answers() -> None:
    policy = TablePolicy(torch.zeros(1, 1, 4))
    answers = torch.tensor([[[0], [1], [2], [3]]])
    adv = torch.tensor([[2.0, -1.0, -0.5, -0.5]])
    logp = policy.log_probs(None, answers)
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), adv, kl_beta=0.0)
    loss.backward()
    # Descending the loss raises the logit of answer 0 and lowers answer 1's.
    assert policy.logits.grad[0, 0, 0] < 0 < policy.logits.grad[0, 0, 1]


def test_clipping_stops_the_gradient_once_the_ratio_leaves_the_trust_region() -> None:
    logp = torch.tensor([[[-0.5]]], requires_grad=True)
    old = torch.tensor([[[-1.0]]])  # ratio e^0.5 > 1 + eps
    loss, stats = grpo_loss(logp, old, old, torch.tensor([[1.0]]), clip_eps=0.2, kl_beta=0.0)
    loss.backward()
    assert logp.grad.item() == 0.0 and stats["clip_fraction"] == 1.0


def test_kl_penalty_pulls_the_policy_back_to_the_reference() -> None:
    ref = TablePolicy(torch.zeros(1, 1, 5))
    policy = TablePolicy(torch.tensor([[[3.0, 0.0, 0.0, 0.0, 0.0]]]))
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    flat = GRPOBatch(None, lambda a: torch.ones(a.shape[:2]))  # no reward signal at all
    gen = torch.Generator().manual_seed(0)
    start = policy.logits.softmax(-1)[0, 0, 0].item()
    train_grpo(policy, ref, opt, lambda step: flat, 60, GRPOConfig(kl_beta=1.0), gen)
    end = policy.logits.softmax(-1)[0, 0, 0].item()
    assert end < start - 0.3  # moved towards the uniform reference


def test_grpo_moves_each_item_towards_its_target() -> None:
    targets = np.array([[2.0, 7.0], [5.0, 0.0]])
    policy = TablePolicy(torch.zeros(2, 2, 10))
    ref = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    history = train_grpo(
        policy, ref, opt, lambda s: _reg_batch(targets), 150, GRPOConfig(kl_beta=0.0), gen
    )
    assert torch.equal(policy.logits.argmax(-1), torch.as_tensor(targets, dtype=torch.long))
    assert history[-1].reward_mean > history[0].reward_mean + 0.3


def test_mutation_replaces_k_answers_only_in_selected_zero_variance_groups() -> None:
    gen = torch.Generator().manual_seed(0)
    answers = torch.arange(4 * 6).view(4, 6, 1)
    rewards = torch.tensor([[0.5] * 6, [0.5] * 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.0] * 6])
    reference = torch.tensor([[100], [101], [102], [103]])
    new, mask = mutate_groups(answers, rewards, reference, MutationConfig(1.0, 2), gen)
    assert mask.sum(1).tolist() == [2, 2, 0, 2]
    assert torch.equal(new[mask], reference[:, None].expand(-1, 6, -1)[mask])
    assert torch.equal(new[~mask], answers[~mask])
    none, mask0 = mutate_groups(answers, rewards, reference, MutationConfig(0.0, 2), gen)
    assert not mask0.any() and torch.equal(none, answers)


def test_mutation_picks_the_lowest_rewards_of_a_near_flat_group() -> None:
    rewards = torch.tensor([[0.50, 0.52, 0.49, 0.51]])
    cfg = MutationConfig(probability=1.0, num_replaced=1, zero_var_tol=0.1)
    _, mask = mutate_groups(
        torch.zeros(1, 4, 1), rewards, torch.ones(1, 1), cfg, torch.Generator().manual_seed(0)
    )
    assert mask[0].tolist() == [False, False, True, False]


def test_mutation_probability_is_respected() -> None:
    rewards = torch.zeros(4000, 4)
    cfg = MutationConfig(probability=0.3, num_replaced=1)
    _, mask = mutate_groups(
        torch.zeros(4000, 4, 1), rewards, torch.ones(4000, 1), cfg, torch.Generator().manual_seed(0)
    )
    assert mask.any(1).float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_mutation_rescues_a_confidently_wrong_policy() -> None:
    """All answers equal and far from the truth: zero variance, so plain GRPO cannot learn."""
    targets = np.array([[9.0]])
    start = torch.full((1, 1, 10), -10.0)
    start[0, 0, 0] = 10.0  # almost surely answers 0, reward 0 with delta 3
    results = {}
    for name, mutation in (("plain", None), ("rmo", MutationConfig(1.0, 2))):
        policy = TablePolicy(start)
        ref = copy.deepcopy(policy).requires_grad_(False)
        opt = torch.optim.Adam(policy.parameters(), lr=0.3)
        gen = torch.Generator().manual_seed(0)
        hist = train_grpo(
            policy,
            ref,
            opt,
            lambda s: _reg_batch(targets),
            40,
            GRPOConfig(kl_beta=0.0),
            gen,
            mutation,
        )
        results[name] = (policy.logits.softmax(-1)[0, 0, 9].item(), hist)
    assert results["plain"][0] < 1e-6
    assert all(s.zero_variance_fraction == 1.0 for s in results["plain"][1])
    assert results["rmo"][0] > 0.5
    assert results["rmo"][1][0].mutated_fraction == 1.0


def test_zero_variance_detection_and_step_statistics() -> None:
    assert zero_variance_groups(torch.tensor([[2.0, 2.0], [1.0, 2.0]])).tolist() == [True, False]
    policy = TablePolicy(torch.zeros(3, 2, 10))
    ref = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    stats = grpo_step(
        policy,
        ref,
        opt,
        _reg_batch(np.full((3, 2), 4.0)),
        GRPOConfig(),
        torch.Generator().manual_seed(0),
    )
    assert 0.0 <= stats.reward_mean <= 1.0 and stats.kl == pytest.approx(0.0, abs=1e-7)
    assert stats.mutated_fraction == 0.0


def test_two_stage_schedule_switches_reward_after_stage_one() -> None:
    seen = []
    schedule = TwoStageSchedule(stage1_steps=3)
    policy = TablePolicy(torch.zeros(1, 1, 3))
    ref = copy.deepcopy(policy).requires_grad_(False)

    def make_batch(step: int) -> GRPOBatch:
        name = schedule.select(step, "regression", "joint")
        seen.append(name)
        return GRPOBatch(None, lambda a: torch.rand(a.shape[:2]))

    train_grpo(
        policy,
        ref,
        torch.optim.SGD(policy.parameters(), lr=0.1),
        make_batch,
        5,
        GRPOConfig(group_size=4),
        torch.Generator().manual_seed(0),
    )
    assert seen == ["regression"] * 3 + ["joint"] * 2


def test_inner_updates_make_clipping_active() -> None:
    policy = TablePolicy(torch.zeros(4, 2, 10))
    ref = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.SGD(policy.parameters(), lr=20.0)
    targets = np.random.default_rng(0).integers(0, 10, size=(4, 2)).astype(float)
    stats = grpo_step(
        policy,
        ref,
        opt,
        _reg_batch(targets),
        GRPOConfig(inner_updates=3),
        torch.Generator().manual_seed(0),
    )
    assert stats.clip_fraction > 0.0
