"""Run directories that never mix two runs: an existing non-empty folder is refused unless the caller asks to
overwrite it, and then it is emptied first, so no file of an earlier run (explanations, plots) survives. Resuming
empties it too but keeps its finished fits (``fits/``, train/journal.py), which are checked before reuse."""

from __future__ import annotations

import shutil
from pathlib import Path

# Files only aqa-fit writes: their presence is what makes a folder safe to empty on --overwrite.
# study.db: an aqa-fit --tune search; fits/settings.json: a run's finished fits (an interrupted run has only these)
RUN_MARKERS = ("config.json", "predictions.csv", "study.db", "fits/settings.json")
KEPT_ON_RESUME = "fits"


class RunDirError(ValueError):
    """The requested output folder holds something that must not be silently mixed with or deleted."""


def prepare_run_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``path`` or, with ``overwrite``, empty an earlier run there (with ``resume``, all but its finished
    fits); refuse anything else that is in it."""
    out = Path(path)
    if overwrite and resume:
        raise RunDirError("--overwrite starts again, --resume continues: give one of them")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a run directory")
    if out.is_dir() and any(out.iterdir()):
        if not (overwrite or resume):
            raise RunDirError(
                f"--out {out} is not empty; choose a new folder, pass --resume to continue its run, or "
                "--overwrite to replace it"
            )
        if not any((out / marker).is_file() for marker in RUN_MARKERS):
            raise RunDirError(
                f"--out {out} does not look like an aqa run directory (no {' or '.join(RUN_MARKERS)}); "
                "refusing to empty it"
            )
        for child in out.iterdir():
            if resume and child.name == KEPT_ON_RESUME:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
