"""Group Relative Policy Optimisation (GRPO) for any policy that scores its own answers.

A policy here is anything with ``sample(query, G, generator) -> answers (B, G, T)`` and
``log_probs(query, answers) -> (B, G, T)`` (``T`` answer tokens, e.g. one per image, or one per
text token). Per query, :func:`grpo_step` draws ``G`` answers, scores them, normalises the rewards
within the group (no critic), optionally mutates zero-variance groups (:mod:`.mutation`) and takes
a clipped-surrogate step with a KL penalty towards a frozen reference policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import torch

from ratingrl.ordinal.mutation import MutationConfig, mutate_groups, zero_variance_groups

__all__ = [
    "GRPOBatch",
    "GRPOConfig",
    "GRPOStats",
    "GroupPolicy",
    "RewardFn",
    "TwoStageSchedule",
    "array_reward_fn",
    "group_advantages",
    "grpo_loss",
    "grpo_step",
    "kl_k3",
    "train_grpo",
]

Q = TypeVar("Q", contravariant=True)
RewardFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps answers ``(B, G, T)`` to rewards ``(B, G)``."""


class GroupPolicy(Protocol[Q]):
    """What GRPO needs from a policy: sampling and per-token log-probabilities of answers."""

    def sample(self, query: Q, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``num_samples`` answers per query: ``(B, G, T)``."""
        ...

    def log_probs(self, query: Q, answers: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, G, T)`` of given answers (differentiable)."""
        ...


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO hyper-parameters (RARL does not publish G; these are our defaults)."""

    group_size: int = 8
    """Answers ``G`` sampled per query."""
    clip_eps: float = 0.2
    """PPO clipping range of the probability ratio."""
    kl_beta: float = 0.04
    """Weight ``beta`` of the KL penalty towards the reference policy."""
    adv_eps: float = 1e-4
    """Added to the group standard deviation before dividing."""
    zero_var_tol: float = 1e-8
    """Groups whose reward std is at most this get advantage exactly 0."""
    inner_updates: int = 1
    """Gradient steps per sampled batch (``> 1`` makes the ratio clipping active)."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clipping (``None`` disables it)."""


class GRPOBatch(NamedTuple):
    """One training batch: the queries, their reward function and optional reference answers."""

    query: Any
    reward_fn: RewardFn
    reference_answers: torch.Tensor | None = None


@dataclass(frozen=True)
class GRPOStats:
    """Diagnostics of one step (rewards are before mutation unless named otherwise)."""

    reward_mean: float
    reward_std: float
    zero_variance_fraction: float
    mutated_fraction: float
    loss: float
    kl: float
    clip_fraction: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def group_advantages(
    rewards: torch.Tensor, eps: float = 1e-4, zero_var_tol: float = 1e-8
) -> torch.Tensor:
    """Group-normalised advantages ``(R - mean) / (std + eps)`` of ``rewards`` ``(B, G)``.

    A zero-variance group gets advantages of exactly 0 (it is explicitly detected rather than
    left to ``eps``: a mean computed in floating point can differ from equal rewards by
    rounding, and that noise must not become a signal).

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.3, 0.3, 0.3]]), eps=0.0)
    tensor([[ 1., -1., -1.,  1.],
            [ 0.,  0.,  0.,  0.]])
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, unbiased=False, keepdim=True)
    adv = (rewards - mean) / (std + eps)
    flat = zero_variance_groups(rewards, zero_var_tol)
    return torch.where(flat[:, None], torch.zeros_like(adv), adv)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased, non-negative KL(policy || reference) estimate (Schulman's k3).

    >>> kl_k3(torch.tensor([-1.0]), torch.tensor([-1.0]))
    tensor([0.])
    """
    delta = ref_logp - logp
    return delta.exp() - delta - 1.0


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.2,
    kl_beta: float = 0.04,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped-surrogate GRPO loss averaged over answer tokens, plus diagnostics.

    ``logp``/``old_logp``/``ref_logp`` are ``(B, G, T)``, ``advantages`` ``(B, G)`` (shared by the
    tokens of one answer), ``mask`` ``(B, G, T)`` marks real tokens.
    """
    mask = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    adv = advantages[..., None]
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    kl = kl_k3(logp, ref_logp)
    per_token = -(surrogate - kl_beta * kl)
    denom = mask.sum().clamp_min(1.0)
    loss = (per_token * mask).sum() / denom
    with torch.no_grad():
        clip_frac = (((ratio - clipped).abs() > 0).to(logp.dtype) * mask).sum() / denom
        stats = {"kl": float((kl * mask).sum() / denom), "clip_fraction": float(clip_frac)}
    return loss, stats


def grpo_step(
    policy: GroupPolicy[Any],
    reference: GroupPolicy[Any],
    optimizer: torch.optim.Optimizer,
    batch: GRPOBatch,
    config: GRPOConfig,
    generator: torch.Generator,
    mutation: MutationConfig | None = None,
) -> GRPOStats:
    """Sample, score, (mutate), normalise and update: one GRPO iteration on one batch."""
    with torch.no_grad():
        answers = policy.sample(batch.query, config.group_size, generator)
    rewards = batch.reward_fn(answers).float()
    flat_before = zero_variance_groups(rewards, config.zero_var_tol)
    mutated = torch.zeros_like(rewards, dtype=torch.bool)
    if mutation is not None and batch.reference_answers is not None:
        answers, mutated = mutate_groups(
            answers, rewards, batch.reference_answers, mutation, generator
        )
        if mutated.any():
            rewards_after = batch.reward_fn(answers).float()
            adv = group_advantages(rewards_after, config.adv_eps, config.zero_var_tol)
        else:
            adv = group_advantages(rewards, config.adv_eps, config.zero_var_tol)
    else:
        adv = group_advantages(rewards, config.adv_eps, config.zero_var_tol)
    with torch.no_grad():
        ref_logp = reference.log_probs(batch.query, answers)
        old_logp = None if config.inner_updates == 1 else policy.log_probs(batch.query, answers)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for _ in range(config.inner_updates):
        logp = policy.log_probs(batch.query, answers)
        old = logp.detach() if old_logp is None else old_logp
        loss, info = grpo_loss(logp, old, ref_logp, adv, config.clip_eps, config.kl_beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
    return GRPOStats(
        reward_mean=float(rewards.mean()),
        reward_std=float(rewards.std(dim=1, unbiased=False).mean()),
        zero_variance_fraction=float(flat_before.float().mean()),
        mutated_fraction=float(mutated.any(dim=1).float().mean()),
        loss=float(loss.detach()),
        kl=info["kl"],
        clip_fraction=info["clip_fraction"],
    )


@dataclass(frozen=True)
class TwoStageSchedule:
    """RARL's schedule: the regression reward for ``stage1_steps`` steps, then the joint reward."""

    stage1_steps: int

    def select(self, step: int, stage1: RewardFn, stage2: RewardFn) -> RewardFn:
        """The reward function in force at ``step`` (0-based).

        >>> schedule = TwoStageSchedule(stage1_steps=2)
        >>> [schedule.select(step, "reg", "joint") for step in range(3)]
        ['reg', 'reg', 'joint']
        """
        return stage1 if step < self.stage1_steps else stage2


def train_grpo(
    policy: GroupPolicy[Any],
    reference: GroupPolicy[Any],
    optimizer: torch.optim.Optimizer,
    make_batch: Callable[[int], GRPOBatch],
    steps: int,
    config: GRPOConfig,
    generator: torch.Generator,
    mutation: MutationConfig | None = None,
    on_step: Callable[[int, GRPOStats], None] | None = None,
) -> list[GRPOStats]:
    """Run ``steps`` GRPO iterations; ``make_batch(step)`` supplies queries and the reward in force.

    Putting the reward inside the batch lets a caller implement any schedule, e.g. the two-stage
    one with :class:`TwoStageSchedule`.
    """
    history = []
    for step in range(steps):
        batch = make_batch(step)
        stats = grpo_step(policy, reference, optimizer, batch, config, generator, mutation)
        history.append(stats)
        if on_step is not None:
            on_step(step, stats)
    return history


def array_reward_fn(
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
    values: np.ndarray | None = None,
) -> RewardFn:
    """Adapt a numpy reward ``score(pred (M, N), target (M, N)) -> (M,)`` to GRPO answers.

    ``targets`` is ``(B, N)``; answers ``(B, G, N)`` are indices into ``values`` (default: the
    index is the value). Each of the ``G`` answers of a query is scored against its targets.

    >>> from ratingrl.ordinal.rewards import ranking_scores
    >>> fn = array_reward_fn(ranking_scores, np.array([[1.0, 2.0]]))
    >>> fn(torch.tensor([[[0, 1], [1, 0]]]))
    tensor([[1., 0.]])
    """
    targets = np.asarray(targets, dtype=float)

    def reward(answers: torch.Tensor) -> torch.Tensor:
        b, g, n = answers.shape
        idx = answers.detach().cpu().numpy()
        pred = idx.astype(float) if values is None else np.asarray(values, dtype=float)[idx]
        tgt = np.broadcast_to(targets[:, None, :], (b, g, n))
        scores = score(pred.reshape(b * g, n), tgt.reshape(b * g, n))
        return torch.as_tensor(scores.reshape(b, g), dtype=torch.float32)

    return reward
