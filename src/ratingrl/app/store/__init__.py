"""What the rating app does to its database, independent of HTTP: one function per action.

The server, the CLI and :class:`~ratingrl.app.source.AppRatingSource` all call these, so the
rules (who sees which clip, what a duplicate submission does, what counts as the rating of a
clip) live in one place, and so does every SQL query of the app. No function here commits:
each takes the caller's ``Session`` and only writes through it, and the caller commits one unit
of work per request or command (:func:`ratingrl.app.db.unit_of_work`), so several calls are
durable together or not at all.

``projects`` (projects, clips, raters), ``context`` (a rater and their project's fields, as a
request reads them from its token), ``queue`` (next clip, progress), ``answers`` (rate, skip,
undo), ``slots`` (clips' places), ``ratings`` (reading ratings back), ``pairs`` (the comparison
queue) and ``pair_answers`` (reading comparisons back) hold the code; everything public is
re-exported here.
"""

from ratingrl.app.errors import AppError, Conflict, NotFound, SchemaError
from ratingrl.app.store.answers import SubmitResult, submit, undo_last
from ratingrl.app.store.context import RaterContext, context_of, rater_context, scale_of
from ratingrl.app.store.pair_answers import (
    PAIR_DELIVERY,
    PAIR_UNDO_DELIVERY,
    AnsweredPair,
    answered_pairs,
    current_pair_answers,
    preference_pairs,
    record_pair_deliveries,
    withdrawn_pair_answers,
)
from ratingrl.app.store.pairs import (
    PairAnswer,
    add_pairs,
    answer_pair,
    next_pair,
    pair_clip_for,
    pair_progress,
    pair_sides,
    project_asks,
    set_asks,
    undo_last_pair,
)
from ratingrl.app.store.projects import (
    ProjectConfig,
    RaterSummary,
    add_rater,
    add_reference,
    add_segments,
    clip_for,
    count_clips,
    create_project,
    find_rater,
    get_project,
    hash_token,
    new_public_id,
    project_names,
    project_of,
    project_raters,
    project_scale,
    rater_for_token,
    rater_names,
    rater_summaries,
    reference_clips,
    revoke_rater,
    rotate_token,
)
from ratingrl.app.store.queue import (
    REPEAT_GAP,
    SHOWN_LEASE_S,
    Shown,
    count_unanswered,
    next_item,
    progress,
    queue_counts,
    show_next,
)
from ratingrl.app.store.ratings import (
    RATING_DELIVERY,
    UNDO_DELIVERY,
    effective_ratings,
    rating_history,
    record_deliveries,
    segment_public_ids,
    segments_by_id,
    undone_ratings,
)

__all__ = [
    "AppError",
    "NotFound",
    "Conflict",
    "SchemaError",
    "ProjectConfig",
    "hash_token",
    "new_public_id",
    "create_project",
    "get_project",
    "project_names",
    "project_of",
    "project_scale",
    "add_segments",
    "add_reference",
    "count_clips",
    "reference_clips",
    "clip_for",
    "add_rater",
    "rater_for_token",
    "RaterContext",
    "rater_context",
    "context_of",
    "scale_of",
    "project_raters",
    "rater_names",
    "RaterSummary",
    "find_rater",
    "revoke_rater",
    "rotate_token",
    "rater_summaries",
    "SHOWN_LEASE_S",
    "REPEAT_GAP",
    "SubmitResult",
    "Shown",
    "show_next",
    "next_item",
    "queue_counts",
    "submit",
    "undo_last",
    "progress",
    "count_unanswered",
    "effective_ratings",
    "undone_ratings",
    "RATING_DELIVERY",
    "UNDO_DELIVERY",
    "record_deliveries",
    "rating_history",
    "segments_by_id",
    "segment_public_ids",
    "project_asks",
    "set_asks",
    "add_pairs",
    "next_pair",
    "pair_sides",
    "pair_clip_for",
    "PairAnswer",
    "answer_pair",
    "undo_last_pair",
    "pair_progress",
    "AnsweredPair",
    "current_pair_answers",
    "withdrawn_pair_answers",
    "PAIR_DELIVERY",
    "PAIR_UNDO_DELIVERY",
    "record_pair_deliveries",
    "answered_pairs",
    "preference_pairs",
]
