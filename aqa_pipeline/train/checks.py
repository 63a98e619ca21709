"""Refusals of stage two: a run whose settings, targets or predictions cannot give meaningful numbers stops with
a message instead of reporting defaults it silently chose, NaN metrics, or an untrained model's scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aqa_pipeline.heads.registry import get_head

if TYPE_CHECKING:
    from aqa_pipeline.train.fitting import FitConfig

MAX_VAL_FRACTION = 0.5


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_fit_config(config: FitConfig) -> None:
    """Types and ranges of the protocol settings and the head's options (from flags or a config file), before
    anything is loaded."""
    head_cls = get_head(config.head)
    if config.cv is not None and (not _is_int(config.cv) or config.cv < 2):
        raise ValueError(f"cv={config.cv!r}: cross-validation needs an integer number of folds ≥ 2")
    if not isinstance(config.seeds, list) or not config.seeds or not all(map(_is_int, config.seeds)):
        raise ValueError(f"seeds={config.seeds!r}: expected a non-empty list of integer seeds")
    fraction = config.val_fraction
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 <= fraction <= MAX_VAL_FRACTION
    ):
        raise ValueError(f"val_fraction={fraction!r}: expected a number from 0 to {MAX_VAL_FRACTION}")
    if not _is_int(config.ensemble) or config.ensemble < 1:
        raise ValueError(f"ensemble={config.ensemble!r}: expected the number of seeds per model, ≥ 1")
    if config.refit not in (None, "epochs"):
        raise ValueError(
            f"refit={config.refit!r}: 'epochs' (train the saved model on every training video) or none"
        )
    if config.protocol not in ("honest", "paper"):
        raise ValueError(f"unknown protocol {config.protocol!r}: honest or paper")
    if not isinstance(config.target, str) or not config.target:
        raise ValueError(f"target={config.target!r}: expected a label name (score, tes, pcs, ...)")
    head_cls.parse_options(config.head_options)


def check_target_varies(values: np.ndarray, target: str, split: str) -> None:
    """A constant target has nothing to rank: every correlation would be NaN."""
    if len(values) and np.ptp(values) == 0:
        raise ValueError(
            f"target {target!r} is constant ({values[0]:g}) over all {len(values)} {split} videos: nothing to "
            "learn or rank; choose another --target"
        )


def check_predictions(prediction: np.ndarray, ids: list[str], head: str, where: str) -> None:
    """NaN/inf predictions mean training diverged; metrics computed from them would be garbage."""
    bad = ~np.isfinite(np.asarray(prediction, dtype=np.float64))
    if bad.any():
        examples = [vid for vid, b in zip(ids, bad, strict=True) if b][:3]
        raise ValueError(
            f"head {head!r} predicted NaN/inf for {int(bad.sum())} of {len(ids)} videos ({where}, e.g. "
            f"{examples}): training diverged or the features are corrupt; try a lower lr, or `aqa-store check`"
        )
