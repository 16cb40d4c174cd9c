"""Supervised baselines and the supervised warm start of the GRPO policies.

The loss follows the model's head: cross-entropy for a ``categorical`` head, mean squared error
for a ``scalar`` head (regression on the label) and the negative log-likelihood of the
cumulative-logit model for a ``cumulative`` head. All three see the same batches for a given
``np.random.Generator``, so they differ only by what they optimise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ratingrl.ordinal.data import OrdinalImages
from ratingrl.ordinal.models import OrdinalCNN

__all__ = ["SupervisedConfig", "predict_pool", "supervised_loss", "train_supervised"]


@dataclass(frozen=True)
class SupervisedConfig:
    """Supervised training parameters."""

    steps: int = 1000
    """Gradient steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate."""


def supervised_loss(
    model: OrdinalCNN, images: torch.Tensor, tasks: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The loss matching ``model.head`` (CE, MSE or cumulative-logit NLL), averaged over images.

    >>> net = OrdinalCNN(head="scalar", generator=torch.Generator().manual_seed(0))
    >>> x, t, y = torch.zeros(2, 1, 20, 20), torch.tensor([0, 1]), torch.tensor([3, 4])
    >>> bool(supervised_loss(net, x, t, y) > 0)
    True
    """
    if model.head == "scalar":
        return F.mse_loss(model.raw(images, tasks), labels.float())
    return F.nll_loss(model.log_probs(images, tasks), labels)


def train_supervised(
    model: OrdinalCNN,
    pool: OrdinalImages,
    config: SupervisedConfig,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[float]:
    """Train ``model`` on random minibatches of ``pool``; returns the loss of every step."""
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=config.lr)
    images, tasks = torch.from_numpy(pool.images), torch.from_numpy(pool.tasks)
    labels = torch.from_numpy(pool.labels)
    model.train()
    losses = []
    for _ in range(config.steps):
        idx = torch.from_numpy(rng.integers(0, len(pool), size=config.batch_size))
        loss = supervised_loss(model, images[idx], tasks[idx], labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def predict_pool(model: OrdinalCNN, pool: OrdinalImages, batch_size: int = 2048) -> np.ndarray:
    """Greedy predictions (value indices) for every image of ``pool``."""
    model.eval()
    out = [
        model.predict(
            torch.from_numpy(pool.images[i : i + batch_size]),
            torch.from_numpy(pool.tasks[i : i + batch_size]),
        )
        for i in range(0, len(pool), batch_size)
    ]
    model.train()
    return torch.cat(out).numpy()
