"""Finished fits of a run, kept as each one finishes, so that an interrupted ``aqa-fit`` resumes where it stopped.

``<run>/fits/`` holds ``settings.json`` (what a fit's result depends on: the resolved options less the seeds,
and the data) and one ``seed<S>-<fold>.npz`` per finished fit, each written whole or not at all.
``aqa-fit --resume`` reloads the fits whose settings match and fits only the rest, so a run interrupted after
hours loses at most the fits in flight, and a 1-seed run grows into a 3-seed one without redoing its first seed.

Entries are plain arrays and JSON, read with ``allow_pickle=False``: a shared run folder cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from aqa_pipeline.heads.base import Head, History
from aqa_pipeline.train.fitting import FitConfig, FitTask, FoldResult, LoadedData
from aqa_pipeline.train.labels import LabelTransform
from aqa_pipeline.train.rundir import RunDirError

FOLDER = "fits"
SETTINGS_FILE = "settings.json"
# FitConfig fields that change what is fitted or when it is saved, not the result of an evaluated fit.
RESULT_NEUTRAL = ("seeds", "progress", "final_model", "log", "refit")


class JournalError(RunDirError):
    """The finished fits on disk cannot be reused: other settings, or an unreadable entry."""


def fit_settings(
    config: FitConfig, head_cls: type[Head], loaded: LoadedData, provenance: dict[str, dict]
) -> dict[str, Any]:
    """Everything an evaluated fit's result depends on, as JSON: the run's options with the head's resolved
    (a default given explicitly equals the default), the feature kinds and their ``provenance`` (the recipe),
    and a digest of the videos and labels they are fitted on."""
    fit = {k: v for k, v in asdict(config).items() if k not in RESULT_NEUTRAL}
    fit["head_options"] = head_cls.resolved_options(config.head_options)
    digest = hashlib.sha256()
    for data in (loaded.train, loaded.test):
        if data is not None:
            digest.update(json.dumps(list(data.ids)).encode())
            digest.update(np.ascontiguousarray(data.label(config.target), dtype=np.float64).tobytes())
            digest.update(np.ascontiguousarray(data.label("difficulty"), dtype=np.float64).tobytes())
    data = {
        "primary": loaded.primary,
        "extras": loaded.extras,
        "provenance": provenance,
        "videos_sha256": digest.hexdigest(),
    }
    return json.loads(json.dumps({"fit": fit, "data": data}, default=str))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old → new`` for every leaf that differs, nested keys joined by dots."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a} → {b}")
    return lines


def with_new_options(kept: dict[str, Any], head_defaults: dict[str, Any]) -> dict[str, Any]:
    """Kept head options, with the default of each option added since they were kept."""
    return {**{key: value for key, value in head_defaults.items() if key not in kept}, **kept}


class FitJournal:
    """The ``fits/`` folder of one run directory."""

    def __init__(self, run_dir: Path, settings: dict[str, Any]) -> None:
        self.folder = Path(run_dir) / FOLDER
        self.settings = settings

    @classmethod
    def open(cls, run_dir: Path, settings: dict[str, Any], head_defaults: dict[str, Any]) -> FitJournal:
        """The run's journal; refuses one written with other settings (naming what differs) before anything is
        fitted or emptied. A head option the kept settings lack (fits made before it existed) counts as its
        default in ``head_defaults``, as a saved model's missing option does: an upgrade alone refits nothing."""
        journal = cls(run_dir, settings)
        path = journal.folder / SETTINGS_FILE
        if not path.is_file():
            return journal
        try:
            before = json.loads(path.read_text())
            before["fit"]["head_options"] = with_new_options(before["fit"]["head_options"], head_defaults)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise JournalError(f"{path}: unreadable ({error}); use --overwrite to start again") from None
        if before != settings:
            changed = "; ".join(differences(before, settings))
            raise JournalError(
                f"--resume: the finished fits in {journal.folder} were made with other settings ({changed}); "
                "use --overwrite to start again, or another --out"
            )
        return journal

    def start(self) -> None:
        """Create the folder and its settings (once the run directory is prepared)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / SETTINGS_FILE).is_file():
            _write_atomically(self.folder / SETTINGS_FILE, json.dumps(self.settings, indent=2).encode())

    def entry(self, task: FitTask) -> Path:
        return self.folder / f"seed{task.seed}-{task.fold.name}.npz"

    def record(self, result: FoldResult) -> None:
        """Keep one finished fit (called as each fit finishes, whatever engine ran it)."""
        task = result.task
        meta = {
            "seed": task.seed,
            "fold": task.fold.name,
            "scored_rows": task.fold.score.tolist(),
            "history": asdict(result.history),
            "transform": result.transform.to_dict(),
            "exemplars": result.exemplars,
            "has_groups": result.groups is not None,
            "explanations": None if result.explanations is None else len(result.explanations),
        }
        arrays = {
            "meta": np.array(json.dumps(meta)),
            "ids": np.array(result.ids, dtype=str),
            "truth": np.asarray(result.truth, dtype=np.float64),
            "prediction": np.asarray(result.prediction, dtype=np.float64),
        }
        if result.groups is not None:
            arrays["groups"] = np.asarray(result.groups, dtype=str)
        for i, explanation in enumerate(result.explanations or []):
            arrays.update({f"explanation.{i}.{key}": np.asarray(v) for key, v in explanation.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _write_atomically(self.entry(task), buffer.getvalue())

    def finished(self, tasks: list[FitTask]) -> dict[int, FoldResult]:
        """The tasks (by index) whose fits were finished earlier, reloaded."""
        return {i: self._load(task) for i, task in enumerate(tasks) if self.entry(task).is_file()}

    def _load(self, task: FitTask) -> FoldResult:
        path = self.entry(task)
        try:
            with np.load(path, allow_pickle=False) as entry:
                arrays = {key: entry[key] for key in entry.files}
            meta = json.loads(str(arrays["meta"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise JournalError(f"{path}: unreadable finished fit ({error}); delete it to refit it") from None
        if meta["scored_rows"] != task.fold.score.tolist():
            raise JournalError(f"{path}: scored other videos than {task.fold.name} of seed {task.seed} does")
        explanations = None
        if meta["explanations"] is not None:
            explanations = [{} for _ in range(meta["explanations"])]
            for key, value in arrays.items():
                if key.startswith("explanation."):
                    _, index, name = key.split(".", 2)
                    explanations[int(index)][name] = value
        return FoldResult(
            task,
            History(**meta["history"]),
            LabelTransform(**meta["transform"]),
            ids=[str(v) for v in arrays["ids"]],
            truth=arrays["truth"],
            prediction=arrays["prediction"],
            groups=arrays["groups"].astype(object) if meta["has_groups"] else None,
            explanations=explanations,
            exemplars=meta["exemplars"],
        )


def _write_atomically(path: Path, content: bytes) -> None:
    """The whole file or none of it: written beside, flushed, then renamed over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
