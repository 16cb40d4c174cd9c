"""A ready-made project with synthetic segments: for examples, tests and the load benchmark.

The environment id defaults to one no simulator knows, so clips are drawn as bar charts and
nothing needs MuJoCo; pass a real id (``HalfCheetah-v5``) with matching obs/act sizes to see
the robot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ratingrl.app import store
from ratingrl.app.schema import open_database
from ratingrl.feedback.segments import RatingScale, SegmentSet

__all__ = ["DemoSpec", "synthetic_segments", "seed_demo"]


@dataclass(frozen=True)
class DemoSpec:
    """What :func:`seed_demo` creates."""

    name: str = "demo"
    env_id: str = "synthetic/bars"
    scale: RatingScale = field(
        default_factory=lambda: RatingScale(4, ("bad", "poor", "good", "excellent"))
    )
    n_segments: int = 20
    clip_length: int = 10
    obs_dim: int = 4
    act_dim: int = 2
    size: int = 64
    fps: int = 10
    ratings_per_clip: int = 1
    repeat_every: int = 0
    raters: tuple[str, ...] = ("alice", "bob")
    references: bool = True
    seed: int = 0


def synthetic_segments(n: int, horizon: int, obs_dim: int, act_dim: int, seed: int) -> SegmentSet:
    """Segments whose true return grows with a per-segment level (a spread from bad to good)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(-2, 2, size=(n, 1))
    obs = rng.normal(0, 0.3, size=(n, horizon, obs_dim))
    obs[..., 0] += level
    acts = rng.uniform(-1, 1, size=(n, horizon, act_dim))
    rewards = obs[..., 0] - 0.1 * (acts**2).sum(-1)
    return SegmentSet(obs, acts, rewards, np.arange(n), np.zeros(n, dtype=int))


def seed_demo(db_url: str, spec: DemoSpec | None = None) -> dict[str, str]:
    """Create the project, queue its segments and raters; returns ``{rater name: token}``.

    One unit of work: a failure half-way (say, a bad rater name) leaves nothing behind.
    """
    spec = spec or DemoSpec()
    with open_database(db_url) as database, database.unit() as session:
        project = store.create_project(
            session,
            store.ProjectConfig(
                name=spec.name,
                env_id=spec.env_id,
                scale=spec.scale,
                clip_length=spec.clip_length,
                fps=spec.fps,
                width=spec.size,
                height=spec.size,
                ratings_per_clip=spec.ratings_per_clip,
                repeat_every=spec.repeat_every,
                instructions="Rate how well the agent moves forward.",
            ),
        )
        segments = synthetic_segments(
            spec.n_segments, spec.clip_length, spec.obs_dim, spec.act_dim, spec.seed
        )
        store.add_segments(session, project, segments, priority=0.0, source_tag="demo")
        if spec.references:
            refs = synthetic_segments(
                spec.scale.n, spec.clip_length, spec.obs_dim, spec.act_dim, spec.seed + 1
            )
            for level in range(spec.scale.n):
                store.add_reference(session, project, refs.subset([level]), level)
        return {name: store.add_rater(session, project, name) for name in spec.raters}
