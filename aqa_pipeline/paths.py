"""Where the tool looks for things that do not live in the repository (weights, data, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def weights_dir() -> Path | None:
    """``$AQA_WEIGHTS_DIR``: a folder of pre-downloaded checkpoints (offline machines, CI)."""
    return _env_dir("AQA_WEIGHTS_DIR")


def data_dir() -> Path | None:
    """``$AQA_DATA_DIR``: a folder with ``annotations/``, ``videos/`` and published features."""
    return _env_dir("AQA_DATA_DIR")


def user_cache_dir() -> Path:
    """Downloaded weights go here: ``$AQA_CACHE_DIR`` or ``~/.cache/aqa-pipeline``."""
    return _env_dir("AQA_CACHE_DIR") or Path.home() / ".cache" / "aqa-pipeline"


def repo_manifest_dir() -> Path:
    """The checked-in ``manifests/`` folder (overridable with ``$AQA_MANIFEST_DIR``)."""
    return _env_dir("AQA_MANIFEST_DIR") or Path(__file__).resolve().parents[1] / "manifests"
