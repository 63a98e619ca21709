"""Atomic, resumable shard writer.

A writer owns one shard file. It writes into ``<shard>.partial`` and flushes after every video, so an interrupted
run (crash, Ctrl-C, killed job) keeps every finished video; the next run with the same arguments reopens the
partial file and ``is_done`` skips them. Only a writer that exits cleanly marks the shard complete, renames it into
place and rebuilds the index, so a half-written shard is never visible through the index. Different processes write
different shards of one store at once; the index rebuild is serialised with a file lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aqa_pipeline import __version__
from aqa_pipeline.store.index import rebuild_index
from aqa_pipeline.store.schema import (
    PARTIAL_SUFFIX,
    STORE_VERSION,
    Feature,
    StoreError,
    check_feature,
    encode_attr,
    incompatibilities,
    shard_name,
    shards_dir,
)

log = logging.getLogger(__name__)


class StoreWriter:
    """Write the feature kinds ``kinds`` (name → provenance) of some videos into one shard of a store."""

    def __init__(
        self,
        store_path: str | Path,
        kinds: dict[str, dict[str, Any]],
        *,
        dataset: str,
        shard_index: int = 0,
        num_shards: int = 1,
    ) -> None:
        if not kinds:
            raise ValueError("a writer needs at least one feature kind")
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard index {shard_index} is outside 0..{num_shards - 1}")
        self.store_path = Path(store_path)
        self.kinds = {kind: dict(prov) for kind, prov in kinds.items()}
        self.dataset = dataset
        self.final_path = shards_dir(self.store_path) / shard_name(list(kinds), shard_index, num_shards)
        self.partial_path = self.final_path.with_name(self.final_path.name + PARTIAL_SUFFIX)
        self.failures: list[dict[str, str]] = []
        self._file: h5py.File | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.partial_path.exists() and self.final_path.exists():
            # Extending a finished shard: work on a copy so the index stays valid until we finish.
            shutil.copy2(self.final_path, self.partial_path)
        if self.partial_path.exists():
            self._file = self._reopen_partial()
        else:
            self._file = h5py.File(self.partial_path, "w")
            self._init_file()

    def _reopen_partial(self) -> h5py.File:
        try:
            handle = h5py.File(self.partial_path, "a")
        except OSError as error:
            aside = self.partial_path.with_name(self.partial_path.name + f".corrupt-{_timestamp()}")
            self.partial_path.rename(aside)
            log.warning(
                "unreadable partial shard %s (%s); moved it to %s and starting afresh",
                self.partial_path,
                error,
                aside,
            )
            handle = h5py.File(self.partial_path, "w")
            self._file = handle
            self._init_file()
            return handle
        existing = json.loads(handle.attrs.get("kinds", "{}"))
        problems = [
            p
            for kind in self.kinds
            for p in incompatibilities(kind, existing.get(kind, {}), self.kinds[kind])
        ]
        if sorted(existing) != sorted(self.kinds) or problems:
            handle.close()
            raise StoreError(
                f"{self.partial_path} was started with different feature settings "
                f"({'; '.join(problems) or f'kinds {sorted(existing)} vs {sorted(self.kinds)}'}); "
                "finish it with the original settings or write to another store"
            )
        for video_id in list(handle.get("videos", {})):
            if not handle["videos"][video_id].attrs.get("complete", False):
                del handle["videos"][video_id]  # interrupted mid-video: redo it
        handle.attrs["complete"] = False
        return handle

    def _init_file(self) -> None:
        assert self._file is not None
        self._file.attrs.update(
            aqa_store_version=STORE_VERSION,
            dataset=self.dataset,
            kinds=json.dumps(self.kinds, sort_keys=True, default=str),
            complete=False,
            created=_timestamp(),
            package_version=__version__,
        )
        provenance = self._file.create_group("provenance")
        for kind, prov in self.kinds.items():
            group = provenance.create_group(kind)
            for key, value in prov.items():
                group.attrs[key] = encode_attr(value)
        self._file.create_group("videos")

    def close(self) -> None:
        """Mark the shard complete, move it into place and rebuild the index."""
        if self._file is None:
            return
        self._file.attrs["complete"] = True
        self._file.attrs["failures"] = json.dumps(self.failures)
        self._file.close()
        self._file = None
        self.partial_path.replace(self.final_path)
        rebuild_index(self.store_path)

    def abort(self) -> None:
        """Keep the partial shard (everything flushed so far) for a later resume; leave the index alone."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- writing ---------------------------------------------------------------------------------------------
    def is_done(self, video_id: str) -> bool:
        videos = self._require_open()["videos"]
        return video_id in videos and bool(videos[video_id].attrs.get("complete", False))

    def done_ids(self) -> list[str]:
        videos = self._require_open()["videos"]
        return [vid for vid in videos if videos[vid].attrs.get("complete", False)]

    def write(
        self, video_id: str, features: dict[str, Feature], labels: dict[str, Any] | None = None
    ) -> None:
        """Write every declared kind of one video; the video counts as done only when all are on disk."""
        handle = self._require_open()
        if "/" in video_id or not video_id:
            raise StoreError(f"invalid video id {video_id!r} (must be non-empty and contain no '/')")
        if set(features) != set(self.kinds):
            raise StoreError(
                f"video {video_id!r}: got kinds {sorted(features)}, this writer declares {sorted(self.kinds)}"
            )
        if self.is_done(video_id):
            raise StoreError(f"video {video_id!r} is already in {self.partial_path}: duplicate id")
        for kind, feature in features.items():
            check_feature(video_id, kind, feature, self.kinds[kind].get("dim"))
        videos = handle["videos"]
        if video_id in videos:
            del videos[video_id]
        group = videos.create_group(video_id)
        for key, value in (labels or {}).items():
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                group.attrs[key] = encode_attr(value)
        for kind, feature in features.items():
            sub = group.create_group(kind)
            sub.create_dataset("data", data=np.ascontiguousarray(feature.data))
            sub.create_dataset("times", data=np.asarray(feature.times))
            for key, value in feature.attrs.items():
                sub.attrs[key] = encode_attr(value)
        group.attrs["complete"] = True
        handle.flush()

    def record_failure(self, video_id: str, reason: str) -> None:
        """Remember a video that could not be processed; it is reported and stored in the shard's attrs."""
        self.failures.append({"id": video_id, "reason": reason})
        log.warning("video %s failed: %s", video_id, reason)

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise StoreError("the writer is not open (use it as a context manager)")
        return self._file


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
