"""The search spaces ``aqa-fit --tune`` explores: each head declares, beside its defaults, the options worth tuning
and their ranges (``search_space``). A range is data, so the tests can build a head at each of its extremes and
``--show-options`` can print it; only :mod:`aqa_pipeline.train.tune` turns it into Optuna suggestions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Trial(Protocol):  # the part of optuna.Trial a dimension uses
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: tuple) -> Any: ...


@dataclass(frozen=True)
class Real:
    """A number from ``low`` to ``high``, sampled on a log scale when ``log`` (learning rates, decays)."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial: Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def extremes(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class Integer:
    """An integer from ``low`` to ``high`` (widths on a log scale, epochs linear)."""

    low: int
    high: int
    log: bool = False

    def suggest(self, trial: Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def extremes(self) -> tuple[int, int]:
        return self.low, self.high


@dataclass(frozen=True)
class OneOf:
    """One of a few values (true/false switches, architectural choices, ``None`` for "whole video")."""

    choices: tuple[Any, ...]

    def suggest(self, trial: Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def extremes(self) -> tuple[Any, ...]:
        return self.choices


Dimension = Real | Integer | OneOf

# The optimiser settings every neural head is tuned over (a head adds its own, or narrows these).
OPTIMISER_SPACE: dict[str, Dimension] = {
    "lr": Real(1e-4, 3e-3, log=True),
    "weight_decay": Real(1e-6, 1e-2, log=True),
    "standardise_inputs": OneOf((False, True)),
}


def describe(dimension: Dimension) -> str:
    """How ``--show-options`` prints a range."""
    if isinstance(dimension, OneOf):
        return "one of " + ", ".join(map(repr, dimension.choices))
    scale = ", log scale" if dimension.log else ""
    return f"{dimension.low:g} to {dimension.high:g}{scale}"
