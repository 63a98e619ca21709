"""``aqa-score``: a user's own videos → the features a saved run was trained on → explained scores, in one call.

The run's model card (``model.json``) says how its features were made: the provenance of its feature kinds,
written by stage one or by the importer of a published release. :class:`FeatureRecipe` turns that record back
into an encoder and the exact preset, extraction runs into a store under ``out`` (resumable: a rerun extracts
nothing again; a video that fails to decode is reported and the others are scored), ``aqa-fit``'s own
``predict_store`` scores it, refusing features that differ from the training ones, and the report renders a page
per video (``out/report``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aqa_pipeline.encoders.registry import ENCODERS
from aqa_pipeline.report.pages import ExplainedVideo, ReportHeader, safe_name, write_pages
from aqa_pipeline.report.points import ClipTimes, ScoreView, score_view
from aqa_pipeline.store.schema import KindProvenance
from aqa_pipeline.train.model_card import ModelCard
from aqa_pipeline.video.presets import Preset

if TYPE_CHECKING:
    from aqa_pipeline.encoders.base import FrozenEncoder
    from aqa_pipeline.train.run import ScoredVideo

log = logging.getLogger(__name__)


class RecipeError(ValueError):
    """The run's features cannot be reproduced from a video (imported without an extractor, extra kinds...)."""


@dataclass(frozen=True)
class FeatureRecipe:
    """How to make a run's primary feature kind from a video: encoder, exact preset, normalisation."""

    kind: str
    encoder: str
    preset: Preset

    @classmethod
    def of_card(cls, card: ModelCard, run_dir: Path) -> FeatureRecipe:
        kind, extras = card.primary_feature, card.extras
        if extras:
            raise RecipeError(
                f"{run_dir} also uses {sorted(extras.values())}: aqa-score reproduces a run's clip kind only"
            )
        record = KindProvenance.from_attrs(card.feature_recipe[kind])
        if record.encoder not in ENCODERS:
            raise RecipeError(
                f"{run_dir} was trained on {kind!r} features made by {record.encoder!r}, which has no extractor "
                f"here (encoders: {', '.join(ENCODERS)}); extract them yourself and use aqa-fit --predict"
            )
        return cls(kind, record.encoder, preset_from_description(json.loads(record.transform)))


def preset_from_description(description: dict) -> Preset:
    """The :class:`Preset` that ``Preset.describe()`` wrote (lists back to tuples), so any preset, a custom one
    included, is reproduced field for field."""
    names = {f.name for f in dataclasses.fields(Preset)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in description.items() if k in names}
    return Preset(**values)


@dataclass(frozen=True)
class VideoScore:
    id: str
    path: str
    score: float | None  # None: the video could not be scored (see ``error``)
    error: str | None = None
    page: str | None = None  # its report page
    explanation: ScoreView | None = None  # what drove the score, in points
    sub_scores: dict[str, float] = field(default_factory=dict)  # e.g. MUSDL's judge1..judgeJ


def score(
    videos: Sequence[str | Path],
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    weights: str | Path | None = None,
    encoder: FrozenEncoder | None = None,
    progress: bool = True,
    on_phase: Callable[[str, float], None] | None = None,
) -> list[VideoScore]:
    """Score ``videos`` with the model in ``run_dir``; writes ``<out>/features.h5``, ``<out>/scores.csv`` and
    the report ``<out>/report/index.html`` with a page per video. ``encoder`` is an already loaded encoder of
    the recipe's kind (its provenance must still match the training features); otherwise the recipe's encoder
    is loaded (from ``weights`` when given). ``on_phase(name, seconds)`` hears how long
    each phase took: ``extract`` (decoding and encoding, overlapped), ``encode`` (of it, in the encoder),
    ``predict`` and ``render``."""
    from aqa_pipeline.encoders.registry import load_encoder
    from aqa_pipeline.extract import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, extract_features, jobs_from_paths
    from aqa_pipeline.train.run import predict_store

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "scored"
    card = ModelCard.read(run_dir)
    recipe = FeatureRecipe.of_card(card, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_from_paths(videos)
    if encoder is None:
        encoder = load_encoder(recipe.encoder, weights)
    elif encoder.name != recipe.encoder:
        raise RecipeError(
            f"{run_dir} needs {recipe.encoder!r} features; the encoder given is {encoder.name!r}"
        )
    device_type = device.split(":")[0]
    phase = _Phases(on_phase)
    summary = extract_features(
        jobs, out / "features.h5", encoder=encoder, preset=recipe.preset, dataset="scored",
        batch_size=DEFAULT_BATCH_SIZE.get(device_type, 4), workers=DEFAULT_WORKERS.get(device_type, 1),
        device=device, progress=progress,
    )  # fmt: skip
    phase.done("extract")
    phase.report("encode", summary.encode_seconds)
    failed = {f.id: f.reason for f in summary.failed}
    paths = {job.id: Path(job.path) for job in jobs}
    # the store under ``out`` may hold videos of earlier calls: score this call's
    rows = (
        [r for r in predict_store(run_dir, out / "features.h5", device=device) if r.id in paths]
        if len(failed) < len(jobs)
        else []
    )
    phase.done("predict")
    explained = {row.id: _explained(row, card.head, paths[row.id]) for row in rows}
    pages = _write_report(out / "report", card, run_dir, list(explained.values()), progress)
    phase.done("render")
    scores = [
        VideoScore(
            job.id,
            job.path,
            explained[job.id].prediction,
            page=pages.get(job.id),
            explanation=explained[job.id].view,
            sub_scores=_sub_scores(explained[job.id].view),
        )
        if job.id in explained
        else VideoScore(job.id, job.path, None, failed[job.id])
        for job in jobs
        if job.id in explained or job.id in failed
    ]
    _write_scores(out / "scores.csv", scores)
    return scores


class _Phases:
    """Seconds since the previous phase ended, told to the caller's ``on_phase`` and logged."""

    def __init__(self, listener: Callable[[str, float], None] | None) -> None:
        self.listener, self.last = listener, time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.report(name, now - self.last)
        self.last = now

    def report(self, name: str, seconds: float) -> None:
        log.info("aqa-score %s: %.2f s", name, seconds)
        if self.listener is not None:
            self.listener(name, seconds)


def _explained(row: ScoredVideo, head: str, video: Path) -> ExplainedVideo:
    """A scored row as the report shows it: contributions in points at the clips' times in the file."""
    from aqa_pipeline.report.thumbnails import video_fps

    arrays = dict(row.explanation)
    units = (float(arrays.pop("label_scale", 1.0)), float(arrays.pop("label_offset", 0.0)))
    fps = video_fps(video)
    starts = np.asarray(row.times, dtype=np.float64) / fps if fps else None
    view = score_view(head, arrays, row.prediction, *units, ClipTimes(starts_s=starts))
    return ExplainedVideo(row.id, row.prediction, view, video=video)


def _write_report(
    folder: Path, card: ModelCard, run_dir: Path, videos: list[ExplainedVideo], progress: bool
) -> dict[str, str]:
    """The scored videos' report; returns each video's page path."""
    split = "test split" if card.folds is None else f"{card.folds}-fold CV"
    header = ReportHeader(
        f"{card.head} · {card.target}: {len(videos)} scored videos",
        run_dir,
        card.target,
        metrics={k: v for k, v in card.metrics.items() if isinstance(v, (int, float))},
        notes=[f"Metrics: the model's own evaluation on {card.dataset} ({card.protocol} protocol, {split}, "
               f"seeds {card.seeds}), not of these videos, which have no true scores."],
    )  # fmt: skip
    write_pages(folder, header, videos, progress=progress)
    return {v.id: str(folder / "videos" / f"{safe_name(v.id)}.html") for v in videos}


def _sub_scores(view: ScoreView) -> dict[str, float]:
    """Scores the head gives beside the total: MUSDL's judges (raw judge units)."""
    judges = view.series.get("judge_scores")
    return {} if judges is None else {f"judge{j + 1}": float(v) for j, v in enumerate(judges)}


def _write_scores(path: Path, scores: list[VideoScore]) -> None:
    extra = sorted({name for s in scores for name in s.sub_scores}, key=lambda n: (len(n), n))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "path", "score", *extra, "error"])
        writer.writeheader()
        for s in scores:
            writer.writerow(
                {"video": s.id, "path": s.path, "score": s.score, **s.sub_scores, "error": s.error or ""}
            )
