"""Where the tool looks for things that do not live in the repository (weights, data, caches)."""

from __future__ import annotations

import os
from importlib import resources
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


def manifest_dir() -> Path:
    """Where dataset manifests are read and rebuilt: ``$AQA_MANIFEST_DIR``, else the copy an installed wheel
    ships as package data (``aqa_pipeline/data/manifests``), else the source checkout's top-level ``manifests/``."""
    override = _env_dir("AQA_MANIFEST_DIR")
    if override:
        return override
    packaged = resources.files("aqa_pipeline") / "data" / "manifests"
    if isinstance(packaged, Path) and packaged.is_dir():  # pip installs wheels unzipped
        return packaged
    return Path(__file__).resolve().parents[1] / "manifests"
