"""Procedural images with ordinal targets, generated with numpy from an explicit seed.

Two tasks, both with ordinal values ``0 .. num_values - 1`` so one scale fits all metrics:

* ``count``: how many small squares are in the image. Squares sit in distinct cells of a
  coarse grid, with a random offset and brightness, over Gaussian pixel noise; the answer is an
  exact integer.
* ``size``: how large a single anti-aliased disc is. A continuous latent size is drawn uniformly
  and rounded to the label, and the disc's brightness varies, so neighbouring labels overlap near
  their boundary: the best possible prediction is not always exact, as with ages or scores.

A *query* is a set of 1, 2, 4 or 8 images of one task (the RARL multi-image ranking setting);
queries are rows of indices into an :class:`OrdinalImages` pool. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TASKS",
    "ImageTaskConfig",
    "OrdinalImages",
    "make_images",
    "partition_queries",
    "render_count",
    "render_size",
    "sample_queries",
]

TASKS: tuple[str, ...] = ("count", "size")
"""Task names; a task's id is its index here."""


@dataclass(frozen=True)
class ImageTaskConfig:
    """Rendering parameters shared by both tasks."""

    image_size: int = 20
    """Side of the square grayscale image in pixels (a multiple of ``cell``)."""
    num_values: int = 10
    """Number of ordinal values; labels are ``0 .. num_values - 1``."""
    noise: float = 0.15
    """Standard deviation of the Gaussian pixel noise."""
    cell: int = 4
    """Grid cell of the counting task; each square is 2x2 pixels inside one cell."""
    min_radius: float = 1.5
    """Disc radius (pixels) at the low end of the size scale."""
    radius_step: float = 0.55
    """Radius increase per ordinal value in the size task."""

    def __post_init__(self) -> None:
        if self.cell < 3:
            raise ValueError("cell must be at least 3 pixels to keep squares apart")
        if self.image_size % self.cell:
            raise ValueError("image_size must be a multiple of cell")
        if (self.image_size // self.cell) ** 2 < self.num_values - 1:
            raise ValueError("the grid has fewer cells than the largest count")
        if 2 * (self.min_radius + self.num_values * self.radius_step) > self.image_size:
            raise ValueError("the largest disc does not fit in the image")


@dataclass(frozen=True)
class OrdinalImages:
    """A pool of images: ``images`` ``(n, 1, H, W)`` float32, ``labels`` and ``tasks`` ``(n,)``."""

    images: np.ndarray
    labels: np.ndarray
    tasks: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def indices_of(self, task: int) -> np.ndarray:
        """Indices of the images of one task (task id = index in :data:`TASKS`)."""
        return np.flatnonzero(self.tasks == task)


def render_count(counts: np.ndarray, rng: np.random.Generator, cfg: ImageTaskConfig) -> np.ndarray:
    """Images ``(n, H, W)`` with ``counts[i]`` bright 2x2 squares in distinct grid cells.

    Distinct cells with a 1-pixel offset keep squares separate, so the label is exact.

    >>> img = render_count(np.array([3]), np.random.default_rng(0), ImageTaskConfig(noise=0.0))
    >>> img.shape, int((img > 0).sum())
    ((1, 20, 20), 12)
    """
    n, side, cell = len(counts), cfg.image_size, cfg.cell
    per_row = side // cell
    cells = per_row * per_row
    rank = np.argsort(np.argsort(rng.random((n, cells)), axis=1), axis=1)
    occupied = rank < counts[:, None]
    offsets = rng.integers(0, cell - 2, size=(n, cells, 2))  # leaves a gap between squares
    brightness = rng.uniform(0.4, 1.0, size=(n, cells)) * occupied
    images = np.zeros((n, side, side))
    rows = np.arange(n)
    for c in range(cells):
        top, left = (c // per_row) * cell, (c % per_row) * cell
        for dy in (0, 1):
            for dx in (0, 1):
                y = top + offsets[:, c, 0] + dy
                x = left + offsets[:, c, 1] + dx
                images[rows, y, x] += brightness[:, c]
    return images


def render_size(latent: np.ndarray, rng: np.random.Generator, cfg: ImageTaskConfig) -> np.ndarray:
    """Images ``(n, H, W)`` of one anti-aliased disc whose radius grows with ``latent``.

    >>> cfg = ImageTaskConfig(noise=0.0)
    >>> img = render_size(np.array([0.0, 9.0]), np.random.default_rng(0), cfg)
    >>> bool(img[1].sum() > 10 * img[0].sum())
    True
    """
    n, side = len(latent), cfg.image_size
    radius = cfg.min_radius + (latent + 0.5) * cfg.radius_step
    cy = rng.uniform(radius, side - radius)
    cx = rng.uniform(radius, side - radius)
    grid = np.arange(side) + 0.5
    dist = np.sqrt(
        (grid[None, :, None] - cy[:, None, None]) ** 2
        + (grid[None, None, :] - cx[:, None, None]) ** 2
    )
    coverage = np.clip(radius[:, None, None] - dist + 0.5, 0.0, 1.0)
    return coverage * rng.uniform(0.5, 1.0, size=(n, 1, 1))


def make_images(
    n_per_task: int, rng: np.random.Generator, cfg: ImageTaskConfig | None = None
) -> OrdinalImages:
    """A pool with ``n_per_task`` images of each task, labels uniform over the ordinal values.

    >>> pool = make_images(5, np.random.default_rng(0))
    >>> pool.images.shape, pool.images.dtype, sorted(set(pool.tasks.tolist()))
    ((10, 1, 20, 20), dtype('float32'), [0, 1])
    >>> bool(pool.labels.min() >= 0 and pool.labels.max() <= 9)
    True
    """
    cfg = cfg or ImageTaskConfig()
    counts = rng.integers(0, cfg.num_values, size=n_per_task)
    latent = rng.uniform(-0.5, cfg.num_values - 0.5, size=n_per_task)
    sizes = np.clip(np.rint(latent), 0, cfg.num_values - 1).astype(np.int64)
    clean = np.concatenate([render_count(counts, rng, cfg), render_size(latent, rng, cfg)])
    noisy = clean + rng.normal(0.0, cfg.noise, size=clean.shape)
    return OrdinalImages(
        images=noisy[:, None].astype(np.float32),
        labels=np.concatenate([counts, sizes]).astype(np.int64),
        tasks=np.repeat(np.arange(len(TASKS)), n_per_task),
    )


def sample_queries(
    pool: OrdinalImages, num_queries: int, num_items: int, rng: np.random.Generator
) -> np.ndarray:
    """``(num_queries, num_items)`` indices; each query holds distinct images of one random task.

    >>> pool = make_images(20, np.random.default_rng(0))
    >>> q = sample_queries(pool, 3, 4, np.random.default_rng(1))
    >>> q.shape, all(len(set(pool.tasks[row])) == 1 for row in q)
    ((3, 4), True)
    """
    task_ids = np.unique(pool.tasks)
    out = np.empty((num_queries, num_items), dtype=np.int64)
    for i, task in enumerate(rng.choice(task_ids, size=num_queries)):
        out[i] = rng.choice(pool.indices_of(task), size=num_items, replace=False)
    return out


def partition_queries(pool: OrdinalImages, num_items: int, rng: np.random.Generator) -> np.ndarray:
    """Split each task's images into disjoint random queries of ``num_items`` (remainder dropped).

    Used for held-out evaluation: every image is in at most one query of a given size.

    >>> pool = make_images(10, np.random.default_rng(0))
    >>> partition_queries(pool, 4, np.random.default_rng(0)).shape
    (4, 4)
    """
    parts = []
    for task in np.unique(pool.tasks):
        idx = rng.permutation(pool.indices_of(task))
        usable = len(idx) - len(idx) % num_items
        parts.append(idx[:usable].reshape(-1, num_items))
    return np.concatenate(parts)
