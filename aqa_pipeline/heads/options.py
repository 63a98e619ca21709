"""Checking ``--set key=value`` head options before any data is loaded.

A head's ``defaults`` say each option's type (an int default takes ints, a float default numbers, a list default
lists, ...); ``rules`` add what a default cannot say: a range, a set of choices, or the types of an option whose
default is ``None``. Unknown names get a "did you mean".
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

TYPE_NAMES = {
    bool: "true/false",
    int: "an integer",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
}


class OptionError(ValueError):
    """A head option that is unknown, of the wrong type or out of range; the message names the option."""


@dataclass(frozen=True)
class Rule:
    """Allowed values of one option beyond its default's type."""

    types: tuple[type, ...] = ()  # overrides the type read from the default (e.g. int or None)
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself is not allowed
    max_open: bool = False
    choices: tuple[Any, ...] = ()


def validate_options(
    head: str, defaults: dict[str, Any], rules: dict[str, Rule], options: dict[str, Any]
) -> None:
    """Raise ``OptionError`` for the first option that is unknown or not allowed."""
    for key, value in options.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, defaults, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise OptionError(
                f"head {head!r}: unknown option {key!r}; {hint}known: {', '.join(sorted(defaults))}"
            )
        problem = _problem(value, defaults[key], rules.get(key, Rule()))
        if problem:
            raise OptionError(f"head {head!r}: option {key}={value!r}: {problem}")


def _allowed_types(default: Any, rule: Rule) -> tuple[type, ...]:
    if rule.types:
        return rule.types
    if default is None:
        return ()  # anything
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def _problem(value: Any, default: Any, rule: Rule) -> str | None:
    types = _allowed_types(default, rule)
    if types and not _is_instance(value, types):
        shown = [t for t in types if not (t is int and float in types)]  # "a number" covers integers
        wanted = " or ".join("null" if t is type(None) else TYPE_NAMES.get(t, t.__name__) for t in shown)
        return f"expected {wanted}, got {TYPE_NAMES.get(type(value), type(value).__name__)}"
    if rule.choices and value not in rule.choices:
        return f"expected one of {', '.join(map(repr, rule.choices))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _range_problem(float(value), rule)
    return None


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false is not a number here
        return bool in types
    return isinstance(value, types)


def _range_problem(value: float, rule: Rule) -> str | None:
    if math.isnan(value):
        return "NaN is not allowed"
    if rule.min is not None and (value < rule.min or (rule.min_open and value == rule.min)):
        return f"must be {'>' if rule.min_open else '≥'} {rule.min:g}"
    if rule.max is not None and (value > rule.max or (rule.max_open and value == rule.max)):
        return f"must be {'<' if rule.max_open else '≤'} {rule.max:g}"
    return None
