"""The index file: derived from the complete shards, checked and rewritten atomically under the index lock.

Because the index only mirrors the shards, it can always be rebuilt (``rebuild_index``) and never holds data that
a crash could lose. ``scan_shards`` is the one place where mixing incompatible provenance, duplicating a
(video, kind) across shards or disagreeing labels is refused, with both file names in the message; a writer runs
it on the store as it *would* be before publishing anything, so a refused shard never reaches the store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aqa_pipeline.store.locks import index_lock
from aqa_pipeline.store.schema import (
    STORE_VERSION,
    StoreError,
    encode_attr,
    incompatibilities,
    read_attrs,
    shards_dir,
)

CATALOG_DTYPE = np.dtype([("id", h5py.string_dtype()), ("shard", h5py.string_dtype())])


@dataclass
class Catalog:
    """What the index holds, gathered from shards: provenance per kind, labels per video, (video, shard) rows."""

    dataset: str = ""
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance_source: dict[str, Path] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> [(video id, shard)]
    owner: dict[tuple[str, str], Path] = field(default_factory=dict)  # (video id, kind) -> shard file


def complete_shards(index_path: Path) -> list[Path]:
    folder = shards_dir(index_path)
    return sorted(folder.glob("*.h5")) if folder.is_dir() else []


def open_shard(path: Path) -> h5py.File:
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        if "unable to lock" in str(error).lower():
            raise StoreError(f"shard {path} is locked by another process: {error}") from error
        raise StoreError(
            f"shard {path} is unreadable (truncated or corrupt): {error}; `aqa-store repair` moves it aside"
        ) from error
    if not handle.attrs.get("complete", False):
        handle.close()
        raise StoreError(f"shard {path} is not marked complete; it was not written by a finished writer")
    return handle


def scan_shards(shards: dict[str, Path]) -> Catalog:
    """Gather and cross-check shards (published name → file to read; a partial may stand in for its name)."""
    catalog = Catalog()
    for name, path in sorted(shards.items()):
        with open_shard(path) as handle:
            try:
                _add_shard(catalog, handle, name, path)
            except (KeyError, OSError, RuntimeError) as error:
                raise StoreError(f"shard {path} is damaged: {error}") from error
    return catalog


def _add_shard(catalog: Catalog, handle: h5py.File, name: str, path: Path) -> None:
    catalog.dataset = catalog.dataset or str(handle.attrs.get("dataset", ""))
    for kind in handle["provenance"]:
        prov = read_attrs(handle["provenance"][kind])
        if kind not in catalog.provenance:
            catalog.provenance[kind], catalog.provenance_source[kind] = prov, path
            continue
        problems = incompatibilities(kind, catalog.provenance[kind], prov)
        if problems:
            raise StoreError(
                f"incompatible {kind!r} features in {catalog.provenance_source[kind]} and {path}: "
                + "; ".join(problems)
            )
    for video_id, group in handle["videos"].items():
        if not group.attrs.get("complete", False):
            continue
        for kind in group:
            if (video_id, kind) in catalog.owner:
                raise StoreError(
                    f"video {video_id!r} feature {kind!r} is in both {catalog.owner[video_id, kind]} and {path}"
                )
            catalog.owner[video_id, kind] = path
            catalog.entries.setdefault(kind, []).append((video_id, name))
        video_labels = {k: v for k, v in read_attrs(group).items() if k != "complete"}
        if video_id in catalog.labels and catalog.labels[video_id] != video_labels:
            raise StoreError(f"video {video_id!r} has different labels in {path} and another shard")
        catalog.labels[video_id] = video_labels


def remove_stale_temps(index_path: Path) -> list[Path]:
    """Index temp files left by killed processes (only ever written under the index lock, so stale when held)."""
    stale = sorted(index_path.parent.glob(f".{index_path.name}.tmp-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def rebuild_index(index_path: str | Path) -> None:
    """Rewrite the index from every complete shard; atomic (temp file + rename) and serialised by a lock."""
    index_path = Path(index_path)
    with index_lock(index_path):
        remove_stale_temps(index_path)
        write_index(index_path, scan_shards({p.name: p for p in complete_shards(index_path)}))


def write_index(index_path: Path, catalog: Catalog) -> None:
    """Write the index to a temp file and rename it into place; the temp file never outlives a failure."""
    tmp = index_path.with_name(f".{index_path.name}.tmp-{os.getpid()}")
    try:
        _write_index_file(tmp, shards_dir(index_path).name, catalog)
        tmp.replace(index_path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_index_file(tmp: Path, relative_dir: str, catalog: Catalog) -> None:
    with h5py.File(tmp, "w") as handle:
        handle.attrs["aqa_store_version"] = STORE_VERSION
        handle.attrs["dataset"] = catalog.dataset
        prov_group = handle.create_group("provenance")
        for kind, prov in catalog.provenance.items():
            group = prov_group.create_group(kind)
            for key, value in prov.items():
                group.attrs[key] = encode_attr(value)
        # All labels in one JSON document as well: reading 400 groups' attributes one by one costs ~0.5 s.
        handle.attrs["labels_json"] = json.dumps(catalog.labels, sort_keys=True, default=_plain)
        videos = handle.create_group("videos")
        for video_id, video_labels in catalog.labels.items():
            group = videos.create_group(video_id)
            for key, value in video_labels.items():
                group.attrs[key] = encode_attr(value)
        catalog_group = handle.create_group("catalog")
        for kind, rows in catalog.entries.items():
            catalog_group.create_dataset(kind, data=np.array(rows, dtype=CATALOG_DTYPE))
            for video_id, shard in rows:
                videos[video_id][kind] = h5py.ExternalLink(
                    f"{relative_dir}/{shard}", f"/videos/{video_id}/{kind}"
                )


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)
