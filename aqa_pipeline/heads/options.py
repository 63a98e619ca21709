"""Typed head options, checked before any data is loaded.

Each head declares its options as one frozen dataclass (``Head.Options``): the field annotations say each option's
type (``int``, ``float`` (integers accepted), ``bool`` (not numbers), ``str``, ``X | None``, ``list[...]``,
``dict[...]``, ``Literal[...]`` for choices), :func:`option` adds a range (kept by a subclass that only changes
the default), and ``__post_init__`` checks what involves several options. Constructing one checks every field, so
no head sees a value it was not declared to take; :func:`parse_options` turns the JSON-ish mapping of ``--set`` /
``--config`` (or a saved model's) into one, with a "did you mean" for unknown names.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar

TYPE_NAMES = {
    bool: "true/false",
    int: "an integer",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


class OptionError(ValueError):
    """A head option that is unknown, of the wrong type or out of range; the message names the option."""


@dataclass(frozen=True)
class Range:
    """Allowed numbers of one option beyond its type."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself is not allowed
    max_open: bool = False

    def problem(self, value: float) -> str | None:
        if math.isnan(value):
            return "NaN is not allowed"
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            return f"must be {'>' if self.min_open else '≥'} {self.min:g}"
        if self.max is not None and (value > self.max or (self.max_open and value == self.max)):
            return f"must be {'<' if self.max_open else '≤'} {self.max:g}"
        return None


def option(
    default: Any,
    *,
    min: float | None = None,  # noqa: A002 - reads as the range it declares
    max: float | None = None,  # noqa: A002
    min_open: bool = False,
    max_open: bool = False,
) -> Any:
    """A field with a range and/or a list or mapping default (each instance gets its own copy). A subclass
    that only changes the default redeclares the field without a range: it keeps its parent's."""
    bounds = Range(min, max, min_open, max_open)
    metadata = {"range": bounds} if bounds != Range() else {}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def dropout_rate(default: float) -> Any:
    """A dropout probability, in [0, 1)."""
    return option(default, min=0, max=1, max_open=True)


@dataclass(frozen=True)
class HeadOptions:
    """Base of every head's options; constructing one checks each field against its annotation and range."""

    def __post_init__(self) -> None:
        hints, ranges = _type_hints(type(self)), _ranges(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            problem = _problem(value, hints[field.name]) or _range_problem(value, ranges.get(field.name))
            if problem:
                raise OptionError(f"option {field.name}={value!r}: {problem}")


OptionsT = TypeVar("OptionsT", bound=HeadOptions)


def parse_options(options_type: type[OptionsT], values: Mapping[str, Any], head: str) -> OptionsT:
    """``values`` (a subset of the options, JSON-ish) over the defaults; ``OptionError`` names the first bad one."""
    known = [field.name for field in dataclasses.fields(options_type)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise OptionError(
                f"head {head!r}: unknown option {key!r}; {hint}known: {', '.join(sorted(known))}"
            )
    try:
        return options_type(**values)
    except OptionError as error:
        raise OptionError(f"head {head!r}: {error}") from None


@cache
def _type_hints(options_type: type) -> dict[str, Any]:
    return typing.get_type_hints(options_type)


@cache
def _ranges(options_type: type) -> dict[str, Range]:
    """Each option's range, from the most specific class that declares one."""
    ranges: dict[str, Range] = {}
    for klass in reversed(options_type.__mro__):
        for field in getattr(klass, "__dataclass_fields__", {}).values():
            if "range" in field.metadata:
                ranges[field.name] = field.metadata["range"]
    return ranges


def _problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` is not of type ``hint``, or None when it is."""
    if _matches(value, hint):
        return None
    container = _container(value, hint)
    if container is not None:
        return _item_problem(value, typing.get_args(container)[-1])
    members = _members(hint)
    if all(typing.get_origin(m) is Literal for m in members):
        return f"expected one of {', '.join(repr(c) for m in members for c in typing.get_args(m))}"
    wanted = [m for m in members if not (m is int and float in members)]  # "a number" covers integers
    got = TYPE_NAMES.get(type(value), type(value).__name__)
    return f"expected {' or '.join(_describe(m) for m in wanted)}, got {got}"


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, member) for member in args)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in args)
    if origin is list or hint is list:
        return isinstance(value, (list, tuple)) and all(_matches(item, args[0]) for item in value if args)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(_matches(item, args[1]) for item in value.values() if args)
    if isinstance(value, bool):  # JSON true/false is not a number here
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _container(value: Any, hint: Any) -> Any:
    """The ``list[...]`` or ``dict[...]`` member of ``hint`` of ``value``'s kind, or None."""
    kind = list if isinstance(value, (list, tuple)) else dict if isinstance(value, dict) else None
    return next((m for m in _members(hint) if kind and typing.get_origin(m) is kind), None)


def _item_problem(value: list | tuple | dict, item_hint: Any) -> str:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return next(
        f"item {key!r}: {_problem(item, item_hint)}" for key, item in items if not _matches(item, item_hint)
    )


def _members(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " or ".join(map(repr, args))
    if origin in (list, dict):
        return TYPE_NAMES[origin]
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(member) for member in args)
    return TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _range_problem(value: Any, bounds: Range | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return (bounds or Range()).problem(float(value))  # NaN is refused without a range too
