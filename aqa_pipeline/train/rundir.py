"""Run directories that never mix two runs: an existing non-empty folder is refused unless the caller asks to
overwrite it, and then it is emptied first, so no file of an earlier run (explanations, plots) survives."""

from __future__ import annotations

import shutil
from pathlib import Path

# Files only aqa-fit writes: their presence is what makes a folder safe to empty on --overwrite.
RUN_MARKERS = ("config.json", "predictions.csv", "study.db")  # study.db: an aqa-fit --tune search


class RunDirError(ValueError):
    """The requested output folder holds something that must not be silently mixed with or deleted."""


def prepare_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create ``path`` or, with ``overwrite``, empty an earlier run there; refuse anything else that is in it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a run directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"--out {out} is not empty; choose a new folder or pass --overwrite to replace it"
            )
        if not any((out / marker).is_file() for marker in RUN_MARKERS):
            raise RunDirError(
                f"--out {out} does not look like an aqa run directory (no {' or '.join(RUN_MARKERS)}); "
                "refusing to empty it"
            )
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
