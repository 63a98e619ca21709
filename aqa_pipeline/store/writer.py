"""Atomic, resumable, checked shard writer.

A writer owns one shard file, under a lock of its own (``locks.ShardLock``, a second writer of that shard is
refused at once). It writes into ``<shard>.partial`` and flushes after every video, so an interrupted run (crash,
Ctrl-C, killed job) keeps every finished video; the next run with the same arguments reopens the partial file and
``is_done`` skips them. Extending a finished shard works on a verified copy of it, never on the shard itself.

The published state only moves from one complete, checked state to the next: settings and layout are checked
against the other shards when the writer opens, duplicates and labels on every ``write``, and ``close`` verifies
every video's checksum, refuses to replace a shard by one holding fewer videos, and cross-checks the store as it
would be, all before the partial file is renamed into place and the index rewritten under the index lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aqa_pipeline import __version__
from aqa_pipeline.store.diskspace import require_space
from aqa_pipeline.store.index import (
    Catalog,
    complete_shards,
    open_shard,
    remove_stale_temps,
    scan_shards,
    write_index,
)
from aqa_pipeline.store.integrity import CHECKSUM_ATTR, checksum, video_problems
from aqa_pipeline.store.locks import ShardLock, index_lock
from aqa_pipeline.store.names import check_kind, check_store_path, check_video_id
from aqa_pipeline.store.schema import (
    PARTIAL_SUFFIX,
    STORE_VERSION,
    Feature,
    StoreError,
    check_feature,
    decode_attr,
    encode_attr,
    incompatibilities,
    shard_name,
    shards_dir,
)

log = logging.getLogger(__name__)
COPY_SUFFIX = ".copy-"  # <shard>.partial.copy-<pid>: a working copy being made, renamed only once verified
SHARD_NAME = re.compile(r"(?P<kinds>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.h5")


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
        for kind in kinds:
            check_kind(kind)
        self.store_path = Path(store_path)
        self.kinds = {kind: dict(prov) for kind, prov in kinds.items()}
        self.dataset = dataset
        self.final_path = shards_dir(self.store_path) / shard_name(list(kinds), shard_index, num_shards)
        self.partial_path = self.final_path.with_name(self.final_path.name + PARTIAL_SUFFIX)
        self.failures: list[dict[str, str]] = []
        self._file: h5py.File | None = None
        self._lock = ShardLock(self.final_path)
        self._others = Catalog()
        self._discarded: set[str] = set()

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
        check_store_path(self.store_path)
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._others = self._check_against_store()
            self._file = self._open_partial()
        except BaseException:
            self._lock.release()
            raise

    def _check_against_store(self) -> Catalog:
        """Refuse, before any work, a run whose shard layout or settings the store's other shards contradict."""
        others = {p.name: p for p in complete_shards(self.store_path) if p != self.final_path}
        _check_layout(self.final_path.name, list(others))
        catalog = scan_shards(others)
        if self.final_path.exists():
            with open_shard(self.final_path) as handle:
                self._check_settings(handle)
        for kind, prov in self.kinds.items():
            problems = incompatibilities(kind, catalog.provenance.get(kind, prov), prov)
            if problems:
                raise StoreError(
                    f"incompatible {kind!r} features: {catalog.provenance_source[kind]} was made with other "
                    f"settings ({'; '.join(problems)}); write to another store"
                )
        return catalog

    def _open_partial(self) -> h5py.File:
        for leftover in self.partial_path.parent.glob(self.partial_path.name + COPY_SUFFIX + "*"):
            leftover.unlink()  # an interrupted copy (we hold the shard lock, so nobody else is making it)
        handle = self._reopen_partial() if self.partial_path.exists() else None
        if handle is not None:
            return handle
        if self.final_path.exists():
            self._copy_final()
            handle = self._reopen_partial()
            if handle is None:
                raise StoreError(f"the working copy {self.partial_path} of {self.final_path} is unreadable")
            return handle
        handle = h5py.File(self.partial_path, "w")
        self._init_file(handle)
        return handle

    def _copy_final(self) -> None:
        """Extend a finished shard through a copy: made under a temp name, checked, then renamed to partial."""
        require_space(
            self.final_path.parent, self.final_path.stat().st_size, f"a working copy of {self.final_path}"
        )
        tmp = self.partial_path.with_name(f"{self.partial_path.name}{COPY_SUFFIX}{os.getpid()}")
        try:
            shutil.copyfile(self.final_path, tmp)
            with h5py.File(tmp, "r") as copy, h5py.File(self.final_path, "r") as original:
                if sorted(copy["videos"]) != sorted(original["videos"]):
                    raise StoreError(f"copying {self.final_path} produced a different file; disk problem?")
            tmp.replace(self.partial_path)
        finally:
            tmp.unlink(missing_ok=True)

    def _reopen_partial(self) -> h5py.File | None:
        """The partial file ready to resume, or None when it is unreadable (then it is removed and redone)."""
        try:
            handle = h5py.File(self.partial_path, "a")
        except OSError as error:
            if "unable to lock" in str(error).lower():
                raise StoreError(f"{self.partial_path} is open in another program: {error}") from error
            return self._discard_partial(error)
        try:
            self._check_settings(handle)
            self._drop_unfinished_videos(handle)
            handle.attrs["complete"] = False
        except StoreError:
            handle.close()
            raise
        except (OSError, KeyError, RuntimeError) as error:  # damaged inside: a kill mid-write
            handle.close()
            return self._discard_partial(error)
        return handle

    def _discard_partial(self, error: Exception) -> None:
        log.warning("unreadable partial shard %s (%s); redoing its videos", self.partial_path, error)
        self.partial_path.unlink()

    def _drop_unfinished_videos(self, handle: h5py.File) -> None:
        """Videos interrupted mid-write, or whose bytes do not match their checksum, are redone."""
        videos = handle.require_group("videos")
        for video_id in list(videos):
            group = videos[video_id]
            problems = video_problems(group) if group.attrs.get("complete", False) else ["interrupted"]
            if problems:
                log.warning("video %s in %s is redone: %s", video_id, self.partial_path, "; ".join(problems))
                del videos[video_id]

    def _check_settings(self, handle: h5py.File) -> None:
        """The shard or partial file on disk was written with this writer's kinds and provenance."""
        existing = json.loads(handle.attrs.get("kinds", "{}"))
        problems = [
            p
            for kind in self.kinds
            for p in incompatibilities(kind, existing.get(kind, {}), self.kinds[kind])
        ]
        if sorted(existing) != sorted(self.kinds) or problems:
            path = Path(handle.filename)
            restart = f", delete {path.name} to start over" if path == self.partial_path else ""
            raise StoreError(
                f"{path} was written with different feature settings "
                f"({'; '.join(problems) or f'kinds {sorted(existing)} vs {sorted(self.kinds)}'}); "
                f"re-run with the original settings{restart}, or write to another store"
            )

    def _init_file(self, handle: h5py.File) -> None:
        handle.attrs.update(
            aqa_store_version=STORE_VERSION,
            dataset=self.dataset,
            kinds=json.dumps(self.kinds, sort_keys=True, default=str),
            complete=False,
            created=_timestamp(),
            package_version=__version__,
        )
        provenance = handle.create_group("provenance")
        for kind, prov in self.kinds.items():
            group = provenance.create_group(kind)
            for key, value in prov.items():
                group.attrs[key] = encode_attr(value)
        handle.create_group("videos")

    def close(self) -> None:
        """Verify the shard, then (under the index lock) cross-check the store as it would be, publish, re-index."""
        if self._file is None:
            return
        try:
            self._verify_before_publish()
            self._file.attrs["complete"] = True
            self._file.attrs["failures"] = json.dumps(self.failures)
            self._file.close()
            self._file = None
            self._publish()
        finally:
            self.abort()

    def _verify_before_publish(self) -> None:
        """Corrupt videos are left out (a re-run redoes them); videos the published shard holds are kept."""
        handle = self._require_open()
        before = set(self.done_ids())
        self._drop_unfinished_videos(handle)
        for video_id in sorted(before - set(self.done_ids())):
            self.record_failure(
                video_id, "its bytes did not match their checksum after writing; re-run to redo it"
            )
        if self.final_path.exists():
            self._restore_from_published(handle)

    def _restore_from_published(self, handle: h5py.File) -> None:
        """Never replace a shard by one with fewer videos: copy back any the working copy lost."""
        with h5py.File(self.final_path, "r") as published:
            old = published["videos"]
            for video_id in old:
                if (
                    video_id in self._discarded
                    or self.is_done(video_id)
                    or not old[video_id].attrs.get("complete")
                ):
                    continue
                if video_problems(old[video_id]):
                    raise StoreError(
                        f"refusing to replace {self.final_path}: video {video_id!r} is missing from "
                        f"{self.partial_path} and corrupt in the shard; run `aqa-store repair`"
                    )
                if video_id in handle["videos"]:
                    del handle["videos"][video_id]
                published.copy(old[video_id], handle["videos"], name=video_id)
                log.warning(
                    "video %s was missing from %s; copied back from %s",
                    video_id,
                    self.partial_path,
                    self.final_path,
                )

    def _publish(self) -> None:
        with index_lock(self.store_path):
            remove_stale_temps(self.store_path)
            shards = {p.name: p for p in complete_shards(self.store_path) if p != self.final_path}
            _check_layout(self.final_path.name, list(shards))  # a writer of another layout may have published
            catalog = scan_shards({**shards, self.final_path.name: self.partial_path})
            self.partial_path.replace(self.final_path)
            write_index(self.store_path, catalog)

    def abort(self) -> None:
        """Keep the partial shard (everything flushed so far) for a later resume; leave the index alone."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._lock.release()

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
        check_video_id(video_id)
        if set(features) != set(self.kinds):
            raise StoreError(
                f"video {video_id!r}: got kinds {sorted(features)}, this writer declares {sorted(self.kinds)}"
            )
        if self.is_done(video_id):
            raise StoreError(f"video {video_id!r} is already in {self.partial_path}: duplicate id")
        for kind, feature in features.items():
            check_feature(video_id, kind, feature, self.kinds[kind].get("dim"))
        stored_labels = _storable(labels or {})
        self._check_against_others(video_id, stored_labels)
        nbytes = sum(np.asarray(f.data).nbytes + np.asarray(f.times).nbytes for f in features.values())
        require_space(self.partial_path.parent, nbytes, f"video {video_id!r}")
        videos = handle["videos"]
        if video_id in videos:
            del videos[video_id]
        group = videos.create_group(video_id)
        for key, value in stored_labels.items():
            group.attrs[key] = value
        for kind, feature in features.items():
            _write_feature(group.create_group(kind), feature)
        group.attrs["complete"] = True
        handle.flush()

    def _check_against_others(self, video_id: str, labels: dict[str, Any]) -> None:
        """A video another shard already holds (for one of our kinds, or with other labels) would block publishing."""
        for kind in self.kinds:
            if (video_id, kind) in self._others.owner:
                raise StoreError(
                    f"video {video_id!r} feature {kind!r} is already in {self._others.owner[video_id, kind]}"
                )
        known = self._others.labels.get(video_id)
        if known is not None and known != {k: decode_attr(v) for k, v in labels.items()}:
            raise StoreError(f"video {video_id!r}: labels {labels} differ from the store's {known}")

    def discard(self, video_id: str) -> None:
        """Drop a video from this shard (repair of a corrupt one); publishing then may hold fewer videos."""
        videos = self._require_open()["videos"]
        if video_id in videos:
            del videos[video_id]
        self._discarded.add(video_id)

    def record_failure(self, video_id: str, reason: str) -> None:
        """Remember a video that could not be processed; it is reported and stored in the shard's attrs."""
        self.failures.append({"id": video_id, "reason": reason})
        log.warning("video %s failed: %s", video_id, reason)

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise StoreError("the writer is not open (use it as a context manager)")
        return self._file


def _check_layout(mine: str, others: list[str]) -> None:
    """Shards sharing a kind must come from one layout (same kinds, same shard count), else videos duplicate."""
    ours = SHARD_NAME.fullmatch(mine)
    assert ours is not None
    our_kinds = set(ours["kinds"].split("+"))
    for name in others:
        theirs = SHARD_NAME.fullmatch(name)
        if theirs is None:
            continue
        their_kinds = set(theirs["kinds"].split("+"))
        if their_kinds & our_kinds and (their_kinds != our_kinds or theirs["count"] != ours["count"]):
            raise StoreError(
                f"this run would write shard {mine}, but {name} already holds {sorted(their_kinds & our_kinds)} "
                f"({'+'.join(sorted(their_kinds))} in {int(theirs['count'])} shard(s)); re-run with the same "
                "feature kinds and shard count, write only new kinds, or use another store"
            )


def _storable(labels: dict[str, Any]) -> dict[str, Any]:
    """Labels as HDF5 attributes; unknown values (None, NaN) are left out."""
    return {
        key: encode_attr(value)
        for key, value in labels.items()
        if value is not None and not (isinstance(value, float) and np.isnan(value))
    }


def _write_feature(group: h5py.Group, feature: Feature) -> None:
    data, times = np.ascontiguousarray(feature.data), np.ascontiguousarray(feature.times)
    group.create_dataset("data", data=data)
    group.create_dataset("times", data=times)
    for key, value in feature.attrs.items():
        group.attrs[key] = encode_attr(value)
    group.attrs[CHECKSUM_ATTR] = checksum(data, times)


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
