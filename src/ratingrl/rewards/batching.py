"""How training draws labels: bootstrap resamples and per-epoch batches of indices.

Every reward method draws its batches with one of these, so methods differ only in the batch
shape their loss needs: random items (segments or pairs) or R4's stratified groups. All take the
trainer's ``np.random.Generator`` and consume it in a fixed order, which keeps a run
reproducible from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["resample", "item_batches", "group_batches"]


def resample(
    indices: np.ndarray, labels: np.ndarray | None, bootstrap: bool, rng: np.random.Generator
) -> np.ndarray:
    """A bootstrap resample, stratified by label when labels are given (no class vanishes).

    Each ensemble member trains on its own resample, so the members disagree where the labels
    are thin, which is what their spread is used for.
    """
    if not bootstrap:
        return indices.copy()
    if labels is None:
        return rng.choice(indices, size=len(indices), replace=True)
    parts = [
        rng.choice(indices[labels[indices] == c], size=int((labels[indices] == c).sum()))
        for c in np.unique(labels[indices])
    ]
    return np.concatenate(parts)


def item_batches(
    member_pools: Sequence[np.ndarray], batch: int, min_batches: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield index arrays ``[E, B]``: each member walks a shuffled copy of its own pool.

    At least ``min_batches`` batches an epoch (the pool is repeated when short), so that a few
    hundred labels still get enough updates per epoch.
    """
    n = len(member_pools[0])
    n_batches = max(math.ceil(n / batch), min_batches)
    need = n_batches * min(batch, n)
    orders = []
    for pool in member_pools:
        reps = math.ceil(need / n)
        orders.append(np.concatenate([rng.permutation(pool) for _ in range(reps)])[:need])
    stacked = np.stack(orders)
    size = min(batch, n)
    for k in range(n_batches):
        yield stacked[:, k * size : (k + 1) * size]


def group_batches(
    member_pools: Sequence[np.ndarray],
    labels: np.ndarray,
    classes: np.ndarray,
    groups: int,
    min_batches: int,
    rng: np.random.Generator,
) -> Iterator[np.ndarray]:
    """Yield index arrays ``[E, G, m]``: R4's groups with one segment per class.

    Each epoch every class pool is shuffled and the smaller pools are topped up by sampling with
    replacement, so every class appears in every group and all labels are used.
    """
    per_member = []
    for pool in member_pools:
        by_class = [pool[labels[pool] == c] for c in classes]
        n_groups = max(len(p) for p in by_class)
        columns = [
            np.concatenate([rng.permutation(p), rng.choice(p, n_groups - len(p))]) for p in by_class
        ]
        per_member.append(np.stack(columns, axis=1)[rng.permutation(n_groups)])
    n_groups = min(len(g) for g in per_member)
    n_batches = max(math.ceil(n_groups / groups), min_batches)
    size = min(groups, n_groups)
    for _ in range(n_batches):
        pick = [g[rng.choice(len(g), size, replace=False)] for g in per_member]
        yield np.stack(pick)
