"""What a store accepts as names and paths: kinds become file names, video ids become HDF5 group names, and the
index path must not overwrite something that is not a store. Checked before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import h5py

from aqa_pipeline.store.schema import StoreError, shards_dir

KIND_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_kind(kind: str) -> None:
    """A kind is part of shard file names: letters, digits, '_', '-', '.' only (no paths, no '+')."""
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise StoreError(
            f"invalid feature kind {kind!r}: use letters, digits, '_', '-' or '.' (up to 64, starting with a "
            "letter or digit)"
        )


def check_video_id(video_id: str) -> None:
    """Video ids are HDF5 group names: no '/', not '.' or '..', no control characters or outer spaces."""
    if (
        not isinstance(video_id, str)
        or video_id in ("", ".", "..")
        or "/" in video_id
        or video_id != video_id.strip()
        or any(ord(char) < 32 for char in video_id)
    ):
        raise StoreError(
            f"invalid video id {video_id!r}: must be non-empty, not '.' or '..', without '/', control "
            "characters or leading/trailing spaces"
        )


def is_store_index(path: Path) -> bool:
    """An index file written by this package (or its shard folder beside it: a damaged index is rebuilt)."""
    if shards_dir(path).is_dir():
        return True
    try:
        with h5py.File(path, "r") as handle:
            return "aqa_store_version" in handle.attrs
    except OSError:
        return False


def check_store_path(path: Path) -> None:
    """Refuse an index path that is a folder or an existing file that is not a feature store."""
    if path.is_dir():
        raise StoreError(
            f"{path} is a folder; --out names the store's index file (e.g. {path / 'features.h5'})"
        )
    if path.exists() and not is_store_index(path):
        raise StoreError(
            f"{path} exists and is not a feature store; refusing to overwrite it (choose another --out)"
        )
    shards = shards_dir(path)
    if shards.exists() and not shards.is_dir():
        raise StoreError(f"{shards} exists and is not a folder; refusing to use it for shards")


def check_not_an_input(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output path that is (or resolves to) one of the inputs, e.g. ``--out clip.mp4``."""
    target = Path(out).resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise StoreError(f"--out {out} is one of the input files; refusing to overwrite it")
