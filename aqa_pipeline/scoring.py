"""``aqa-score``: a user's own videos → the features a saved run was trained on → its scores, in one call.

The run directory says how its features were made (``run.json``: the provenance of its feature kinds, written by
stage one or by the importer of a published release). :class:`FeatureRecipe` turns that record back into an
encoder and the exact preset, extraction runs into a store under ``out`` (resumable: a rerun extracts nothing
again; a video that fails to decode is reported and the others are scored), and ``aqa-fit``'s own
``predict_store`` scores it, refusing features that differ from the training ones.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aqa_pipeline.encoders.registry import ENCODERS
from aqa_pipeline.store.schema import KindProvenance
from aqa_pipeline.video.presets import Preset

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
    def of_run(cls, run_dir: Path) -> FeatureRecipe:
        inputs = json.loads((run_dir / "run.json").read_text())
        kind, extras = inputs["primary_feature"], inputs.get("extras") or {}
        if extras:
            raise RecipeError(
                f"{run_dir} also uses {sorted(extras.values())}: aqa-score reproduces a run's clip kind only"
            )
        record = KindProvenance.from_attrs(inputs["provenance"][kind])
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


def score(
    videos: Sequence[str | Path],
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    weights: str | Path | None = None,
    progress: bool = True,
) -> list[VideoScore]:
    """Score ``videos`` with the model in ``run_dir``; writes ``<out>/features.h5`` and ``<out>/scores.csv``."""
    from aqa_pipeline.encoders.registry import load_encoder
    from aqa_pipeline.extract import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, extract_features, jobs_from_paths
    from aqa_pipeline.train.run import predict_store

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "scored"
    out.mkdir(parents=True, exist_ok=True)
    recipe = FeatureRecipe.of_run(run_dir)
    jobs = jobs_from_paths(videos)
    encoder = load_encoder(recipe.encoder, weights)
    device_type = device.split(":")[0]
    summary = extract_features(
        jobs, out / "features.h5", encoder=encoder, preset=recipe.preset, dataset="scored",
        batch_size=DEFAULT_BATCH_SIZE.get(device_type, 4), workers=DEFAULT_WORKERS.get(device_type, 1),
        device=device, progress=progress,
    )  # fmt: skip
    failed = {f["id"]: f["reason"] for f in summary.failed}
    predicted = {}
    if len(failed) < len(jobs):
        predicted = {row["id"]: row["prediction"] for row in predict_store(run_dir, out / "features.h5")}
    scores = [
        VideoScore(job.id, job.path, predicted.get(job.id), failed.get(job.id))
        for job in jobs
        if job.id in predicted or job.id in failed
    ]
    _write_scores(out / "scores.csv", scores)
    return scores


def _write_scores(path: Path, scores: list[VideoScore]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "path", "score", "error"])
        writer.writeheader()
        for s in scores:
            writer.writerow({"video": s.id, "path": s.path, "score": s.score, "error": s.error or ""})
