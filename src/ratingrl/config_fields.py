"""One way to declare a configuration field with its help text, for every config dataclass.

The help travels in the field's metadata, where the command line reads it
(:mod:`ratingrl.cli.options`), so an option's text is written once, next to its default.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["described"]


def described(default: Any, help: str, flag: str | None = None) -> Any:  # noqa: A002
    """A dataclass field with ``help`` (and the option name ``flag`` where it differs from the
    field's name); lists and tuples become tuples, dicts are copied per instance."""
    meta = {"help": help, **({"flag": flag} if flag else {})}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)
