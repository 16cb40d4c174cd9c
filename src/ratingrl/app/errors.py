"""The errors the rating app refuses a request with; each maps to one HTTP status.

They live apart from the store so that the schema module, the server's exception handlers and
the CLI can name them without importing the store's queries.
"""

from __future__ import annotations

__all__ = ["AppError", "NotFound", "Conflict", "SchemaError"]


class AppError(ValueError):
    """A request the app refuses; the message says why (shown to the user). HTTP 422."""


class NotFound(AppError):
    """The named project, clip or rater does not exist (for this caller). HTTP 404."""


class Conflict(AppError):
    """The request contradicts what is stored (a second answer, a taken name). HTTP 409."""


class SchemaError(AppError):
    """The database's tables are not a schema this version of ratingrl knows how to upgrade."""
