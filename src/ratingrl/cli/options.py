"""Command-line options generated from a configuration dataclass, so each option is defined once.

A field's help text, default and option name (``metadata["flag"]``, else ``--field-name``) come
from the dataclass; sequences are written comma-separated (``--net-arch 64,64``), ``None`` as an
empty value. :func:`parse_value` reads the same text for ``--set key=value`` and spec files.
A new field of :class:`~ratingrl.rl.config.RunConfig` is therefore an option of
``ratingrl train`` with its help and default, with no change here.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

__all__ = ["OptionError", "field_options", "parse_value", "parse_assignment", "format_default"]


class OptionError(ValueError):
    """A value that does not fit its field; the message names the option and the value."""


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``(inner type, optional)`` of ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(tp) in (tuple, list)


def _element(tp: Any) -> type:
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    return args[0] if args else str


def format_default(value: Any) -> str:
    """How a default is written on the command line (``256,256``; empty for None or ())."""
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _scalar(kind: type, text: str, name: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"{name} takes true or false, got {text!r}")
    try:
        return kind(text.strip())
    except ValueError:
        raise OptionError(f"{name} takes a {kind.__name__}, got {text!r}") from None


def parse_value(tp: Any, text: str, name: str) -> Any:
    """The value of a field of type ``tp`` written as ``text`` on the command line.

    Sequences are comma-separated (a JSON list works too); an empty text or ``none`` is None
    for an optional field; dicts are JSON objects.
    """
    inner, optional = _unwrap(tp)
    stripped = text.strip()
    if optional and stripped.lower() in ("", "none", "null"):
        return None
    if _is_sequence(inner):
        if stripped.startswith("["):
            try:
                items = [str(x) for x in json.loads(stripped)]
            except (json.JSONDecodeError, TypeError):
                raise OptionError(f"{name} takes comma-separated values, got {text!r}") from None
        else:
            items = [x for x in stripped.split(",") if x.strip()]
        return tuple(_scalar(_element(inner), x, name) for x in items)
    if typing.get_origin(inner) is dict or inner is dict:
        try:
            value = json.loads(stripped or "{}")
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise OptionError(f"{name} takes a JSON object such as {{\"alpha\": 1}}, got {text!r}")
        return value
    return _scalar(inner, stripped, name)


def _option_type(tp: Any) -> Any:
    """What Typer parses: the field's scalar type, or ``str`` for sequences and dicts (parsed by
    :func:`parse_value`), optional scalars as ``X | None``."""
    inner, optional = _unwrap(tp)
    if _is_sequence(inner) or inner is dict or typing.get_origin(inner) is dict:
        return str
    return typing.Optional[inner] if optional else inner  # noqa: UP045 - Typer's spelling


def field_options(
    cls: type, skip: tuple[str, ...] = (), panel: str | None = None
) -> list[inspect.Parameter]:
    """One keyword parameter per field of dataclass ``cls`` (but ``skip``), for a Typer command.

    Defaults are shown in ``--help`` as they are typed; parse the received values back with
    :func:`values_to_fields`.
    """
    hints = typing.get_type_hints(cls)
    params = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()  # type: ignore[misc]
        )
        option_type = _option_type(hints[field.name])
        shown = format_default(default) if option_type is str else default
        option = typer.Option(
            _flag(field), help=escape(field.metadata.get("help", "")), rich_help_panel=panel
        )
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=shown,
                annotation=Annotated[option_type, option],
            )
        )
    return params


def values_to_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Typer's values of :func:`field_options` as field values (sequences parsed)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for name, value in values.items():
        tp = hints[name]
        out[name] = parse_value(tp, value, _flag(fields[name])) if isinstance(value, str) and (
            _option_type(tp) is str and tp is not str
        ) else value
    return out


def parse_assignment(cls: type, text: str) -> tuple[str, Any]:
    """``"key=value"`` of ``--set`` as (field name, value); the value is read as the field's
    option would read it (``--set net_arch=64,64``, ``--set max_episode_steps=none``)."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        raise OptionError(f"--set takes key=value, got {text!r}")
    hints = typing.get_type_hints(cls)
    if key not in hints or key not in {f.name for f in dataclasses.fields(cls)}:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise OptionError(f"--set {text!r}: no field {key!r}; fields: {known}")
    return key, parse_value(hints[key], value, f"--set {key}")


def with_options(func: Callable, extra: list[inspect.Parameter]) -> Callable:
    """``func`` with ``extra`` keyword parameters added to its signature (Typer reads it)."""
    signature = inspect.signature(func, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    func.__signature__ = signature.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    return func
