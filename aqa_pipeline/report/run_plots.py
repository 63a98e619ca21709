"""The two plots every run directory gets: training curves and predicted-vs-true scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aqa_pipeline.train.run import FitCurves, PredictedVideo


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(histories: list[FitCurves], path: Path) -> None:
    """Training loss (left axis) and validation Spearman (right axis) per run; the kept epoch is marked. Only for
    heads trained by epochs (the caller skips closed-form ones, which would give an empty plot)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    twin = ax.twinx()
    for curves in histories:
        history = curves.history
        if history.train_loss:
            epochs = np.arange(1, len(history.train_loss) + 1)
            ax.plot(epochs, history.train_loss, lw=1, alpha=0.7, label=f"seed {curves.seed} {curves.fold}")
        if history.val_spearman:
            twin.plot(history.val_epochs, history.val_spearman, ls="--", lw=1, alpha=0.7)
            if history.best_epoch:
                twin.axvline(history.best_epoch, color="grey", lw=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (solid)")
    twin.set_ylabel("validation Spearman (dashed)")
    if len(histories) <= 10:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scatter(predictions: list[PredictedVideo], path: Path, title: str = "") -> None:
    """Predicted vs true score for the first seed, with the identity line."""
    plt = _pyplot()
    first_seed = predictions[0].seed if predictions else None
    rows = [p for p in predictions if p.seed == first_seed]
    truth = np.array([p.truth for p in rows])
    prediction = np.array([p.prediction for p in rows])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(truth, prediction, s=10, alpha=0.7)
    if len(rows):
        low, high = min(truth.min(), prediction.min()), max(truth.max(), prediction.max())
        ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
