"""Optional experiment tracking (``aqa-fit --log tensorboard|mlflow``): the shared training loop reports each
epoch's loss and validation Spearman here. Off by default; the tracking package is imported only when asked for,
and a missing one is a one-line error naming what to install."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "mlflow")


class TrackingError(RuntimeError):
    """The requested tracker cannot be used (package missing, unknown name)."""


class Tracker(Protocol):
    def log_epoch(self, run: str, epoch: int, values: dict[str, float]) -> None:
        """Scalars of one epoch of one fitted model (``run`` is e.g. ``seed0/fold1``)."""

    def close(self) -> None: ...


@dataclass
class TensorBoardTracker:
    writer: Any  # torch.utils.tensorboard.SummaryWriter

    def log_epoch(self, run: str, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{run}/{name}", value, epoch)

    def close(self) -> None:
        self.writer.close()


@dataclass
class MLflowTracker:
    mlflow: Any  # the mlflow module, with an active run

    def log_epoch(self, run: str, epoch: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({f"{run}/{name}": value for name, value in values.items()}, step=epoch)

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(kind: str, out_dir: Path, name: str, params: dict[str, Any]) -> Tracker:
    """TensorBoard event files under ``out_dir/tensorboard``, or an MLflow run (``$MLFLOW_TRACKING_URI``)."""
    if kind not in TRACKERS:
        raise TrackingError(f"unknown tracker {kind!r}: one of {', '.join(TRACKERS)}")
    try:
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            return TensorBoardTracker(SummaryWriter(log_dir=str(out_dir / "tensorboard")))
        import mlflow
    except ImportError as error:
        raise TrackingError(f"--log {kind} needs the {kind} package: pip install {kind} ({error})") from None
    mlflow.start_run(run_name=name)
    mlflow.log_params({key: str(value)[:250] for key, value in params.items()})
    return MLflowTracker(mlflow)


def log_history(tracker: Tracker, run: str, history: Any) -> None:
    """A finished fit's epochs (``heads.base.History``), for fits that ran where the tracker is not (worker
    processes, Ray tasks): the same scalars the live hook logs, after the fact."""
    validation = dict(zip(history.val_epochs, history.val_spearman, strict=True))
    for epoch, loss in enumerate(history.train_loss, start=1):
        values = {"train_loss": loss}
        if epoch in validation:
            values["val_spearman"] = validation[epoch]
        tracker.log_epoch(run, epoch, values)
