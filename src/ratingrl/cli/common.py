"""What every ``ratingrl`` command shares: the console, one-line errors, number lists."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "fail", "numbers", "set_threads", "EnvOpt", "ThreadsOpt", "PluginsOpt"]

console = Console()
errors = Console(stderr=True)

EnvOpt = Annotated[
    str, typer.Option("--env", help="Gymnasium id (HalfCheetah-v5) or dmc/domain-task")
]
ThreadsOpt = Annotated[int, typer.Option(help="PyTorch threads (tiny nets run best on 1)")]
PluginsOpt = Annotated[
    str,
    typer.Option(
        help="modules (dotted names or .py files, comma-separated) to import first, e.g. one "
        "that registers a reward method of your own"
    ),
]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr (one line, no traceback); the exit to raise (code 2)."""
    errors.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def numbers(text: str, option: str, kind: type = int) -> tuple:
    """``"64,64"`` -> ``(64, 64)``; a clear error naming ``option`` otherwise."""
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise fail(f"{option} takes comma-separated {what}, got {text!r}") from None


def set_threads(threads: int) -> None:
    """PyTorch threads for this process (imported late: ``ratingrl --help`` stays fast); with
    one thread, XLA's too (``--backend sbx``), set before JAX is first imported."""
    import torch

    torch.set_num_threads(max(1, threads))
    if threads <= 1 and "jax" not in sys.modules:
        from ratingrl.rl.backends import single_thread_xla_flags

        os.environ["XLA_FLAGS"] = single_thread_xla_flags(os.environ.get("XLA_FLAGS"))


def load_plugins_or_fail(plugins: str) -> tuple[str, ...]:
    """Import the ``--plugins`` modules now, so their methods are known to what follows."""
    from ratingrl.rewards.methods import TrainingError, load_plugins

    modules = tuple(m.strip() for m in plugins.split(",") if m.strip())
    try:
        load_plugins(list(modules))
    except TrainingError as err:
        raise fail(f"--plugins: {err}") from None
    return modules
