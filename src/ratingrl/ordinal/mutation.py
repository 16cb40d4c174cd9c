"""Response mutation (RMO): give zero-variance GRPO groups a gradient again.

When every answer of a group earns the same reward, group-normalised advantages are all zero and
the query teaches nothing. RARL's response mutation replaces some of those answers by the
reference answer (the ground truth), so the group again holds better and worse answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MutationConfig", "mutate_groups", "zero_variance_groups"]


@dataclass(frozen=True)
class MutationConfig:
    """Response-mutation parameters (not published by RARL; these are our defaults)."""

    probability: float = 0.5
    """Chance ``p`` that a zero-variance group is mutated."""
    num_replaced: int = 1
    """Number ``k`` of the group's lowest-reward answers replaced by the reference answer."""
    zero_var_tol: float = 1e-8
    """A group whose reward standard deviation is at most this counts as zero-variance."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be in [0, 1]")
        if self.num_replaced < 1:
            raise ValueError("num_replaced must be at least 1")


def zero_variance_groups(rewards: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """Boolean ``(B,)``: groups (rows of ``rewards`` ``(B, G)``) whose rewards are all equal.

    >>> zero_variance_groups(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))
    tensor([ True, False])
    """
    return rewards.std(dim=1, unbiased=False) <= tol


def _lowest(rewards: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices ``(B, k)`` of the ``k`` lowest rewards per row, ties broken uniformly at random."""
    perm = torch.rand(rewards.shape, generator=generator).argsort(dim=1)
    order = torch.gather(rewards, 1, perm).argsort(dim=1, stable=True)
    return torch.gather(perm, 1, order[:, :k])


def mutate_groups(
    answers: torch.Tensor,
    rewards: torch.Tensor,
    reference_answers: torch.Tensor,
    config: MutationConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the ``k`` lowest answers of selected zero-variance groups by the reference answer.

    ``answers`` is ``(B, G, ...)``, ``rewards`` ``(B, G)``, ``reference_answers`` ``(B, ...)``.
    Each zero-variance group is selected with probability ``p``. Returns the new answers (a copy)
    and a ``(B, G)`` mask of the replaced answers; the caller re-scores them.

    >>> answers = torch.tensor([[[3], [3], [3]], [[1], [2], [5]]])
    >>> rewards = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.5, 0.9]])
    >>> cfg = MutationConfig(probability=1.0, num_replaced=2)
    >>> new, mask = mutate_groups(answers, rewards, torch.tensor([[7], [4]]), cfg,
    ...                           torch.Generator().manual_seed(0))
    >>> mask.sum(dim=1).tolist(), sorted(new[0, :, 0].tolist()), new[1].flatten().tolist()
    ([2, 0], [3, 7, 7], [1, 2, 5])
    """
    group, k = rewards.shape[1], min(config.num_replaced, rewards.shape[1])
    chosen = zero_variance_groups(rewards, config.zero_var_tol)
    chosen &= torch.rand(len(rewards), generator=generator) < config.probability
    mask = torch.zeros(rewards.shape, dtype=torch.bool)
    if k == group:
        mask[chosen] = True
    else:
        mask.scatter_(1, _lowest(rewards, k, generator), chosen[:, None].expand(-1, k))
    reference = reference_answers[:, None].expand_as(answers)
    shape = mask.shape + (1,) * (answers.dim() - 2)
    return torch.where(mask.view(shape), reference, answers), mask
