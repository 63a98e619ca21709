"""The index file: derived from the complete shards, rebuilt atomically under a lock.

Because the index only mirrors the shards, it can always be rebuilt (``rebuild_index``) and never holds data that
a crash could lose. Mixing incompatible provenance or duplicating a (video, kind) across shards is refused here,
at build time, with both file names in the message.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aqa_pipeline.store.schema import (
    STORE_VERSION,
    StoreError,
    encode_attr,
    incompatibilities,
    read_attrs,
    shards_dir,
)

CATALOG_DTYPE = np.dtype([("id", h5py.string_dtype()), ("shard", h5py.string_dtype())])


@contextmanager
def _locked(path: Path):
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def complete_shards(index_path: Path) -> list[Path]:
    folder = shards_dir(index_path)
    return sorted(folder.glob("*.h5")) if folder.is_dir() else []


def _open_shard(path: Path) -> h5py.File:
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise StoreError(f"shard {path} is unreadable (truncated or corrupt): {error}") from error
    if not handle.attrs.get("complete", False):
        handle.close()
        raise StoreError(f"shard {path} is not marked complete; it was not written by a finished writer")
    return handle


def rebuild_index(index_path: str | Path) -> None:
    """Rewrite the index from every complete shard; atomic (temp file + rename) and serialised by a lock."""
    index_path = Path(index_path)
    with _locked(index_path):
        provenance: dict[str, dict[str, Any]] = {}
        provenance_source: dict[str, Path] = {}
        labels: dict[str, dict[str, Any]] = {}
        entries: dict[str, list[tuple[str, str]]] = {}  # kind -> [(video id, shard name)]
        owner: dict[tuple[str, str], Path] = {}
        dataset = None
        for shard in complete_shards(index_path):
            with _open_shard(shard) as handle:
                dataset = dataset or handle.attrs.get("dataset")
                for kind in handle["provenance"]:
                    prov = read_attrs(handle["provenance"][kind])
                    if kind in provenance:
                        problems = incompatibilities(kind, provenance[kind], prov)
                        if problems:
                            raise StoreError(
                                f"incompatible {kind!r} features in {provenance_source[kind]} and {shard}: "
                                + "; ".join(problems)
                            )
                    else:
                        provenance[kind], provenance_source[kind] = prov, shard
                for video_id, group in handle["videos"].items():
                    if not group.attrs.get("complete", False):
                        continue
                    for kind in group:
                        if (video_id, kind) in owner:
                            raise StoreError(
                                f"video {video_id!r} feature {kind!r} is in both {owner[video_id, kind]} and {shard}"
                            )
                        owner[video_id, kind] = shard
                        entries.setdefault(kind, []).append((video_id, shard.name))
                    video_labels = {k: v for k, v in read_attrs(group).items() if k != "complete"}
                    if video_id in labels and labels[video_id] != video_labels:
                        raise StoreError(
                            f"video {video_id!r} has different labels in {shard} and another shard"
                        )
                    labels[video_id] = video_labels
        _write_index(index_path, dataset, provenance, labels, entries)


def _write_index(index_path, dataset, provenance, labels, entries) -> None:
    tmp = index_path.with_name(f".{index_path.name}.tmp-{os.getpid()}")
    relative_dir = shards_dir(index_path).name
    with h5py.File(tmp, "w") as handle:
        handle.attrs["aqa_store_version"] = STORE_VERSION
        handle.attrs["dataset"] = dataset or ""
        prov_group = handle.create_group("provenance")
        for kind, prov in provenance.items():
            group = prov_group.create_group(kind)
            for key, value in prov.items():
                group.attrs[key] = encode_attr(value)
        # All labels in one JSON document as well: reading 400 groups' attributes one by one costs ~0.5 s.
        handle.attrs["labels_json"] = json.dumps(labels, sort_keys=True, default=_plain)
        videos = handle.create_group("videos")
        for video_id, video_labels in labels.items():
            group = videos.create_group(video_id)
            for key, value in video_labels.items():
                group.attrs[key] = encode_attr(value)
        catalog = handle.create_group("catalog")
        for kind, rows in entries.items():
            catalog.create_dataset(kind, data=np.array(rows, dtype=CATALOG_DTYPE))
            for video_id, shard in rows:
                videos[video_id][kind] = h5py.ExternalLink(
                    f"{relative_dir}/{shard}", f"/videos/{video_id}/{kind}"
                )
    tmp.replace(index_path)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)
