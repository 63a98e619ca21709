"""``aqa-report``'s reading of a run directory: each video's scores and explanation, rendered as pages.

Reads what ``aqa-fit`` writes: ``predictions.csv`` (split, fold, seed, id, truth, prediction),
``explanations/<id>.npz`` (the head's arrays plus ``truth``, ``prediction`` and the fold's ``label_scale`` /
``label_offset`` that take working units to points), ``config.json`` (head, target), ``run.json`` (the store's
provenance, for seconds per clip) and ``metrics.json``. :mod:`aqa_pipeline.report.points` turns the arrays into
contributions in points and :mod:`aqa_pipeline.report.pages` renders them; the index lists the worst error first,
so an analyst starts where the model is most wrong.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESERVED_KEYS = ("truth", "prediction", "label_scale", "label_offset")


@dataclass
class VideoExplanation:
    """One video: its true and predicted score and the explanation arrays by name (empty when none were saved)."""

    id: str
    truth: float
    prediction: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    units: tuple[float, float] = (1.0, 0.0)  # (scale, offset) from working units to points

    @property
    def error(self) -> float:
        return abs(self.prediction - self.truth)


def clip_seconds(provenance: dict | None) -> float | None:
    """Seconds between consecutive clip starts from a store provenance (flat, or one level down per kind)."""
    if not isinstance(provenance, dict):
        return None
    candidates = [provenance, *[v for v in provenance.values() if isinstance(v, dict)]]
    for candidate in candidates:
        fps = candidate.get("fps")
        if fps == "native":  # clips at the source's own rate: a release states it as source_fps
            fps = candidate.get("source_fps")
        step = candidate.get("stride") or candidate.get("clip_len")
        try:
            fps, step = float(fps), float(step)
        except (TypeError, ValueError):
            continue
        if fps > 0 and step > 0:
            return step / fps
    return None


def read_predictions(path: Path) -> dict[str, tuple[float, float]]:
    """id → (truth, mean prediction over the rows for that id: seeds, folds)."""
    required = {"split", "fold", "seed", "id", "truth", "prediction"}
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {sorted(required)}")
        for line, row in enumerate(reader, start=2):
            try:
                rows[row["id"]].append((float(row["truth"]), float(row["prediction"])))
            except ValueError as error:
                raise ValueError(f"{path}:{line}: bad number for video {row['id']!r}: {error}") from None
    return {vid: (pairs[0][0], float(np.mean([p for _, p in pairs]))) for vid, pairs in rows.items()}


def load_run(run_dir: str | Path) -> tuple[list[VideoExplanation], dict]:
    """Videos of a run (with explanations where saved) and its config; a clear error if the run is incomplete."""
    run_dir = Path(run_dir)
    predictions_path = run_dir / "predictions.csv"
    if not predictions_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no predictions.csv (is this an aqa-fit run directory?)")
    # config.json holds the options (head, target), run.json the inputs (store provenance).
    config: dict = {}
    for name in ("config.json", "run.json"):
        if (run_dir / name).is_file():
            config.update(json.loads((run_dir / name).read_text()))
    videos = {
        vid: VideoExplanation(vid, truth, pred)
        for vid, (truth, pred) in read_predictions(predictions_path).items()
    }
    for npz_path in sorted((run_dir / "explanations").glob("*.npz")):
        vid = npz_path.stem
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
        video = videos.setdefault(vid, VideoExplanation(vid, float("nan"), float("nan")))
        # the explained prediction is the one drawn, so it is also the one ranked
        saved = {k: float(np.asarray(arrays.pop(k)).reshape(-1)[0]) for k in RESERVED_KEYS if k in arrays}
        video.truth = saved.get("truth", video.truth)
        video.prediction = saved.get("prediction", video.prediction)
        video.units = (saved.get("label_scale", 1.0), saved.get("label_offset", 0.0))
        video.arrays = arrays
    return list(videos.values()), config


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    progress: bool = False,
    videos_dir: str | Path | None = None,
) -> Path:
    """The run's report (``index.html`` and a page per video) under ``out_dir`` (default ``RUN/report``);
    returns the index. ``videos_dir`` holds the videos by id (``<id>.mp4`` ...) for the player and keyframes."""
    from aqa_pipeline.report.pages import ExplainedVideo, ReportHeader, write_pages
    from aqa_pipeline.report.points import ClipTimes, score_view

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    videos, config = load_run(run_dir)
    seconds = clip_seconds(config.get("provenance"))
    head = str(_run_field(config, "head") or run_dir.name)
    explained = [
        ExplainedVideo(
            video.id,
            video.prediction,
            score_view(
                head, video.arrays, video.prediction, *video.units, ClipTimes(seconds_per_clip=seconds)
            ),
            video.truth,
            _video_file(videos_dir, video.id),
        )
        for video in sorted(videos, key=lambda v: (-v.error if np.isfinite(v.error) else np.inf, v.id))
    ]
    header = ReportHeader(
        f"{head} · {_run_field(config, 'target') or ''}",
        run_dir,
        str(_run_field(config, "target") or ""),
        metrics=_headline_metrics(run_dir),
        scatter=run_dir / "scatter.png",
        notes=[
            f"time axis: {seconds:.3g} s per clip"
            if seconds
            else "time axis: clip index (no fps in provenance)"
        ],
    )
    return write_pages(out, header, explained, progress=progress)


def _video_file(folder: str | Path | None, video_id: str) -> Path | None:
    """The video named by its id under ``folder`` (stage one's own lookup), None when there is none."""
    from aqa_pipeline.extract.jobs import find_video

    path = find_video(folder, video_id) if folder else None
    return path if path is not None and path.is_file() else None


def _headline_metrics(run_dir: Path) -> dict[str, float]:
    """The evaluated split's numeric metrics from ``metrics.json`` (test, else CV), for the index's table."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())
    split = metrics.get("test") or metrics.get("cv") or metrics
    return {k: float(v) for k, v in split.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _run_field(config: dict, key: str):
    """A field of the run's config, at the top level or under ``fit`` (where aqa-fit puts head and target)."""
    fit = config.get("fit") if isinstance(config.get("fit"), dict) else {}
    return config.get(key, fit.get(key))
