"""The one error type of bad feedback data (re-exported by :mod:`ratingrl.feedback.segments`)."""

from __future__ import annotations

__all__ = ["FeedbackError"]


class FeedbackError(ValueError):
    """Invalid feedback data: the message names the field and the offending value."""
