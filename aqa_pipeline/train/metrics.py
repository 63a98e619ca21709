"""Evaluation metrics with the field's conventions spelled out (heads-reference §1.3).

``rl2`` is the squared relative L2 ×100 as CoRe/TPT report it; ``rl2_abs`` the unsquared form (FSPN). Both
normalise by the range of the evaluated ground truth, as the papers' code does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr


def _range(truth: np.ndarray) -> float:
    span = float(np.max(truth) - np.min(truth))
    return span if span > 0 else 1.0


def spearman(a, b) -> float:
    """Spearman ρ, or 0.0 when either side is constant (nothing ranked): epoch selection and quick checks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def regression_metrics(truth, prediction) -> dict[str, float]:
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.shape != prediction.shape or truth.ndim != 1:
        raise ValueError(f"metrics need two equal 1-D arrays, got {truth.shape} and {prediction.shape}")
    constant = len(truth) < 2 or np.ptp(truth) == 0 or np.ptp(prediction) == 0
    relative = (prediction - truth) / _range(truth)
    return {
        "spearman": float("nan") if constant else float(spearmanr(truth, prediction).statistic),
        "pearson": float("nan") if constant else float(pearsonr(truth, prediction).statistic),
        "mse": float(np.mean((prediction - truth) ** 2)),
        "rl2": float(np.mean(relative**2) * 100.0),
        "rl2_abs": float(np.mean(np.abs(relative))),
        "n": int(len(truth)),
    }


def fisher_z_mean(correlations, eps: float = 1e-6) -> float:
    """Average correlations in Fisher-z space (AQA-7's multi-class average), guarded at ±1."""
    rho = np.clip(np.asarray(correlations, dtype=np.float64), -1 + eps, 1 - eps)
    return float(np.tanh(np.mean(np.arctanh(rho))))


def per_class_metrics(truth, prediction, classes) -> dict[str, dict[str, float]]:
    """Metrics per action class plus ``fisher_z_spearman`` over the classes (AQA-7 protocol)."""
    truth, prediction, classes = np.asarray(truth), np.asarray(prediction), np.asarray(classes)
    per_class = {
        str(c): regression_metrics(truth[classes == c], prediction[classes == c]) for c in np.unique(classes)
    }
    rhos = [m["spearman"] for m in per_class.values() if np.isfinite(m["spearman"])]
    return {"classes": per_class, "fisher_z_spearman": fisher_z_mean(rhos) if rhos else float("nan")}


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean and std (ddof=1 when several) of each metric over seeds: ``spearman_mean``, ``spearman_std``, ..."""
    out: dict[str, float] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def mean_over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric (nested per-class ones too) averaged over seeds: the headline numbers of a run."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = mean_over_seeds([r[key] for r in runs])
            continue
        value = float(np.mean([r[key] for r in runs]))
        out[key] = int(value) if isinstance(first, int) and value.is_integer() else value
    return out
