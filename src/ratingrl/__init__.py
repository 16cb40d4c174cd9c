"""ratingrl: reward functions and policies from ratings.

The sub-packages follow the data path: ``feedback`` (segments, teachers, datasets) ->
``rewards`` (nets, losses, training) -> ``rl`` (Stable-Baselines3 glue) -> ``experiments``.
``soft_rank`` and ``soft_sort`` are re-exported here; they are imported lazily so that
``import ratingrl.feedback`` does not pay for importing PyTorch.
"""

from typing import Any

__all__ = ["soft_rank", "soft_sort", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("soft_rank", "soft_sort"):
        from ratingrl.rewards import soft_rank as module

        return getattr(module, name)
    raise AttributeError(f"module 'ratingrl' has no attribute {name!r}")
