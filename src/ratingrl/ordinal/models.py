"""A tiny CNN for per-image ordinal prediction, with three interchangeable heads.

* ``categorical``: logits over the ordinal values (the RL policy, and the cross-entropy baseline).
* ``scalar``: one real value per image (the MSE regression baseline), predicted as the rounded,
  clipped value.
* ``cumulative``: a cumulative-logit (proportional-odds) model, ``P(y <= k) = sigmoid(theta_k - f)``
  with ordered thresholds ``theta_k``; it also yields a categorical distribution, so it could act
  as a policy too.

Each task has its own head on a shared trunk. Parameters are initialised from an explicit
``torch.Generator`` (:func:`init_parameters`), never from torch's global random state.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["HeadKind", "ImageQuery", "ItemwisePolicy", "OrdinalCNN", "init_parameters"]

HeadKind = Literal["categorical", "scalar", "cumulative"]


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise conv and linear layers (PyTorch's default scheme) from ``generator``.

    PyTorch layers draw their initial weights from the global RNG; redrawing them from an
    explicit generator makes a seed reproducible without touching global state.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
            if layer.bias is not None:
                bound = 1.0 / max(1, layer.weight[0].numel()) ** 0.5
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class OrdinalCNN(nn.Module):
    """Two conv blocks and a hidden layer shared by all tasks, then one head per task.

    >>> g = torch.Generator().manual_seed(0)
    >>> net = OrdinalCNN(num_tasks=2, num_values=10, generator=g)
    >>> x, t = torch.zeros(3, 1, 20, 20), torch.tensor([0, 1, 1])
    >>> net.log_probs(x, t).shape, net.predict(x, t).shape
    (torch.Size([3, 10]), torch.Size([3]))
    """

    def __init__(
        self,
        num_tasks: int = 2,
        num_values: int = 10,
        head: HeadKind = "categorical",
        channels: tuple[int, int] = (16, 32),
        hidden: int = 64,
        image_size: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_tasks, self.num_values, self.head = num_tasks, num_values, head
        c1, c2 = channels
        self.trunk = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (image_size // 4) ** 2, hidden),
            nn.ReLU(),
        )
        out = num_values if head == "categorical" else 1
        self.out = nn.Linear(hidden, num_tasks * out)
        # Cumulative head: first threshold and positive gaps keep thresholds ordered.
        start = torch.full((num_tasks, 1), -(num_values - 2) / 2.0)
        self.theta_start = nn.Parameter(start)
        self.theta_gaps = nn.Parameter(torch.full((num_tasks, num_values - 2), 0.5413))
        if generator is not None:
            init_parameters(self, generator)

    def raw(self, images: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Head output for each image's own task: ``(n, V)`` logits or ``(n,)`` scores."""
        z = self.out(self.trunk(images)).view(len(images), self.num_tasks, -1)
        z = z[torch.arange(len(images)), tasks]
        return z if self.head == "categorical" else z[:, 0]

    def thresholds(self) -> torch.Tensor:
        """Ordered cumulative-logit thresholds ``(num_tasks, V - 1)``."""
        gaps = F.softplus(self.theta_gaps)
        return torch.cat([self.theta_start, self.theta_start + gaps.cumsum(dim=1)], dim=1)

    def log_probs(self, images: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(n, V)`` over the ordinal values (categorical/cumulative heads)."""
        z = self.raw(images, tasks)
        if self.head == "categorical":
            return F.log_softmax(z, dim=-1)
        if self.head == "cumulative":
            cdf = torch.sigmoid(self.thresholds()[tasks] - z[:, None])
            ones, zeros = torch.ones_like(z[:, None]), torch.zeros_like(z[:, None])
            probs = torch.diff(torch.cat([zeros, cdf, ones], dim=1), dim=1)
            return torch.log(probs.clamp_min(1e-12))
        raise ValueError("a scalar head has no distribution over values")

    @torch.no_grad()
    def predict(self, images: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Greedy answer per image: the most likely value, or the rounded scalar."""
        if self.head == "scalar":
            z = self.raw(images, tasks)
            return z.round().clamp(0, self.num_values - 1).long()
        return self.log_probs(images, tasks).argmax(dim=-1)


class ImageQuery(NamedTuple):
    """A batch of queries: ``images`` ``(B, N, 1, H, W)`` and their ``tasks`` ``(B, N)``."""

    images: torch.Tensor
    tasks: torch.Tensor


class ItemwisePolicy:
    """GRPO policy over image queries: one independent categorical answer per image (token).

    Sampling ``G`` answers costs one forward pass, since the ``G`` draws share the images.

    >>> net = OrdinalCNN(generator=torch.Generator().manual_seed(0))
    >>> policy = ItemwisePolicy(net)
    >>> query = ImageQuery(torch.zeros(2, 4, 1, 20, 20), torch.zeros(2, 4, dtype=torch.long))
    >>> answers = policy.sample(query, 8, torch.Generator().manual_seed(1))
    >>> answers.shape, policy.log_probs(query, answers).shape
    (torch.Size([2, 8, 4]), torch.Size([2, 8, 4]))
    """

    def __init__(self, model: OrdinalCNN, temperature: float = 1.0) -> None:
        self.model, self.temperature = model, temperature

    def item_log_probs(self, query: ImageQuery) -> torch.Tensor:
        """Log-probabilities ``(B, N, V)`` of every value for every image."""
        b, n = query.tasks.shape
        flat = self.model.log_probs(query.images.flatten(0, 1), query.tasks.flatten())
        if self.temperature != 1.0:
            flat = torch.log_softmax(flat / self.temperature, dim=-1)
        return flat.view(b, n, -1)

    def sample(
        self, query: ImageQuery, num_samples: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``num_samples`` answers per query: ``(B, G, N)`` value indices."""
        probs = self.item_log_probs(query).exp()
        b, n, v = probs.shape
        draws = torch.multinomial(probs.view(b * n, v), num_samples, True, generator=generator)
        return draws.view(b, n, num_samples).transpose(1, 2)

    def log_probs(self, query: ImageQuery, answers: torch.Tensor) -> torch.Tensor:
        """Per-image log-probabilities ``(B, G, N)`` of the given answers."""
        logp = self.item_log_probs(query)
        g = answers.shape[1]
        return torch.gather(logp[:, None].expand(-1, g, -1, -1), 3, answers[..., None])[..., 0]
