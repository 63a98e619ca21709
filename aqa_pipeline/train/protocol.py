"""Evaluation protocols: which videos train, which select the epoch, which are scored.

- ``test``: train on the store's ``train`` split, score its ``test`` split.
- ``cv``: K-fold cross-validation on ``train`` (when there is no test split, or when asked with ``--cv K``).

In both, epoch selection uses a validation split carved from the training part (``val_fraction``), never the
videos being scored. ``paper`` selection reproduces the papers' "best epoch on test" and is labelled as such
wherever results are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold


@dataclass(frozen=True)
class Fold:
    """Row indices (into the loaded training data, or the test data for ``score_on_test``). ``val`` is None
    when the head needs none, or under paper selection (where the scored videos select the epoch)."""

    name: str
    fit: np.ndarray
    val: np.ndarray | None
    score: np.ndarray
    score_on_test: bool


def carve_validation(
    indices: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (fit, val) with ``fraction`` of them (at least 2) for validation."""
    if fraction <= 0:
        return indices, np.array([], dtype=np.int64)
    n_val = max(2, int(round(len(indices) * fraction)))
    if n_val >= len(indices) - 1:
        raise ValueError(f"cannot carve {n_val} validation videos from {len(indices)} training videos")
    shuffled = rng.permutation(indices)
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])


def make_folds(
    n_train: int,
    *,
    cv: int | None,
    has_test: bool,
    n_test: int,
    seed: int,
    val_fraction: float,
    uses_validation: bool,
    paper_selection: bool,
) -> list[Fold]:
    rng = np.random.default_rng(seed)
    all_train = np.arange(n_train)
    if cv is None and has_test:
        if paper_selection:
            return [Fold("test", all_train, None, np.arange(n_test), True)]
        fit, val = carve_validation(all_train, val_fraction if uses_validation else 0.0, rng)
        return [Fold("test", fit, val if len(val) else None, np.arange(n_test), True)]
    k = cv or 5
    if k < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {k}")
    if n_train < 2 * k:
        raise ValueError(
            f"{n_train} training videos are too few for {k}-fold cross-validation (need ≥ {2 * k})"
        )
    folds = []
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (train_idx, held_out) in enumerate(splitter.split(all_train)):
        if paper_selection:
            fit, val = train_idx, None  # the runner selects on the scored fold itself, and labels the output
        else:
            fit, val = carve_validation(train_idx, val_fraction if uses_validation else 0.0, rng)
            val = val if len(val) else None
        folds.append(Fold(f"fold{i}", fit, val, held_out, False))
    return folds


def final_fold(n_train: int, *, seed: int, val_fraction: float, uses_validation: bool) -> Fold:
    """All training videos (less the validation carve) for the model saved with a run; scores nothing."""
    fit, val = carve_validation(
        np.arange(n_train), val_fraction if uses_validation else 0.0, np.random.default_rng(seed)
    )
    return Fold("final", fit, val if len(val) else None, np.array([], dtype=np.int64), False)
