"""One place that builds rich progress bars, so every long step looks the same.

Progress is opt-out (``enabled=False``) and never required: library functions take an
optional callback, and this helper gives the bar when a person is watching.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_bar"]


class _Silent:
    """Stands in for ``rich.progress.Progress`` when progress is off."""

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        return None

    def advance(self, *args: object, **kwargs: object) -> None:
        return None


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress | _Silent]:
    """A rich ``Progress`` with bar, count, elapsed and remaining time (or a silent stand-in)."""
    if not enabled:
        yield _Silent()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, transient=False) as progress:
        original = progress.add_task

        def add_task(description: str, *args: object, **kwargs: object) -> int:
            kwargs.setdefault("status", "")
            return original(description, *args, **kwargs)

        progress.add_task = add_task  # type: ignore[method-assign]
        yield progress
