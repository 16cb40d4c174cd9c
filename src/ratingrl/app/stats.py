"""The operator's view: who rated how much, how fast and how consistently; rater agreement."""

from __future__ import annotations

import math

import numpy as np
from sqlalchemy.orm import Session

from ratingrl.app import store
from ratingrl.app.agreement import krippendorff_alpha_ordinal, self_consistency
from ratingrl.app.db import Project, RatingStatus

__all__ = ["project_stats"]


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def project_stats(session: Session, project: Project) -> dict:
    """Numbers for the operator page (JSON-ready; NaN becomes null). Reads only."""
    scale = store.project_scale(project)
    raters = store.project_raters(session, project)
    current = store.effective_ratings(session, project, include_repeats=True)
    rows = store.rating_history(session, project)
    per_rater = []
    for rater in raters:
        mine = [r for r in current if r.rater_id == rater.id]
        history = [r for r in rows if r.rater_id == rater.id]
        seconds = [
            r.answered_at - r.shown_at
            for r in history
            if r.shown_at and r.status != RatingStatus.UNDONE
        ]
        first = {r.segment_id: r.value for r in mine if not r.is_repeat}
        pairs = [
            (first[r.segment_id], r.value) for r in mine if r.is_repeat and r.segment_id in first
        ]
        consistency = self_consistency(
            np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), scale.n
        )
        per_rater.append(
            {
                "name": rater.name,
                "rated": sum(1 for r in mine if not r.is_repeat),
                "repeats_rated": sum(1 for r in mine if r.is_repeat),
                "skipped": sum(1 for r in history if r.status == RatingStatus.SKIPPED),
                "undone": sum(1 for r in history if r.status == RatingStatus.UNDONE),
                "median_seconds": _finite(float(np.median(seconds))) if seconds else None,
                "self_consistency": {k: _finite(v) for k, v in consistency.items()},
            }
        )
    first_ratings = [r for r in current if not r.is_repeat]
    by_segment: dict[int, dict[int, int]] = {}
    for r in first_ratings:
        by_segment.setdefault(r.segment_id, {})[r.rater_id] = r.value
    shared = {s: v for s, v in by_segment.items() if len(v) >= 2}
    alpha = None
    if shared:
        ids = sorted({rid for v in shared.values() for rid in v})
        table = np.full((len(ids), len(shared)), np.nan)
        for j, values in enumerate(shared.values()):
            for rid, value in values.items():
                table[ids.index(rid), j] = value
        alpha = _finite(krippendorff_alpha_ordinal(table))
    return {
        "project": project.name,
        "env_id": project.env_id,
        "scale": scale.to_dict(),
        "segments": store.count_clips(session, project),
        "segments_rated": len(by_segment),
        "ratings": len(first_ratings),
        "clips_shown_unanswered": store.count_unanswered(session, project),
        "multi_rated_clips": len(shared),
        "krippendorff_alpha_ordinal": alpha,
        "raters": per_rater,
    }
