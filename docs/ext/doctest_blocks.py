"""A griffe extension for the API reference: doctests written straight into a docstring's text.

The library's docstrings carry small doctests (``>>> call`` then its output) in their prose,
where pytest's ``--doctest-modules`` runs them. Markdown reads a ``>>>`` line as three nested
quotes and ``[1, 2]`` output as a link, so this wraps each such block in a ``pycon`` code fence
before mkdocstrings renders it. Blocks already inside a Google ``Examples:`` section (indented)
are griffe's own business and left alone.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every unindented run of doctest lines (up to a blank line) fenced."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        end = i
        while end < len(lines) and lines[end].strip():
            end += 1
        if out and out[-1].strip():
            out.append("")
        out += ["```pycon", *lines[i:end], "```"]
        i = end
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the bare doctests of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
