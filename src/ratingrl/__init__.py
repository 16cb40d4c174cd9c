"""ratingrl: reward functions and policies from ratings.

The public entry points most users need are re-exported here; everything else lives in the
sub-packages named after the data path: ``feedback`` -> ``rewards`` -> ``rl`` -> ``experiments``.
"""

from ratingrl.rewards.soft_rank import soft_rank, soft_sort

__all__ = ["soft_rank", "soft_sort", "__version__"]
__version__ = "0.1.0"
