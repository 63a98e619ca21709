"""Fast, validating reads of a feature store into memory.

``FeatureStore.load`` opens each shard once (through the index's catalog, not by resolving one external link per
video) and returns plain float32 arrays, so stage two never touches HDF5 inside its training loop.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aqa_pipeline.store.index import open_shard
from aqa_pipeline.store.integrity import CHECKSUM_ATTR, checksum
from aqa_pipeline.store.schema import STORE_VERSION, StoreError, read_attrs, shards_dir


@dataclass
class FeatureSet:
    """Videos of one split with one or more feature kinds, aligned by id, and their labels."""

    ids: list[str]
    features: dict[str, list[np.ndarray]]  # kind -> per-video (T_i, ...) arrays
    times: dict[str, list[np.ndarray]]
    labels: list[dict[str, Any]]
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, name: str) -> np.ndarray:
        """One numeric label for every video (NaN where a video lacks it)."""
        return np.array([float(lab.get(name, np.nan)) for lab in self.labels], dtype=np.float64)

    def label_names(self) -> list[str]:
        return sorted({key for lab in self.labels for key in lab})

    def lengths(self, kind: str) -> np.ndarray:
        return np.array([len(x) for x in self.features[kind]], dtype=np.int64)

    def padded(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, T_max, ...) zero-padded array and the lengths."""
        arrays = self.features[kind]
        lengths = self.lengths(kind)
        out = np.zeros((len(arrays), int(lengths.max()), *arrays[0].shape[1:]), dtype=arrays[0].dtype)
        for i, x in enumerate(arrays):
            out[i, : len(x)] = x
        return out, lengths

    def subset(self, indices) -> FeatureSet:
        indices = list(indices)
        return FeatureSet(
            ids=[self.ids[i] for i in indices],
            features={k: [v[i] for i in indices] for k, v in self.features.items()},
            times={k: [v[i] for i in indices] for k, v in self.times.items()},
            labels=[self.labels[i] for i in indices],
            provenance=self.provenance,
        )


class FeatureStore:
    """Read access to a store through its index file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(
                f"no feature store at {self.path} (expected an index .h5 written by aqa-extract/aqa-import)"
            )
        try:
            with h5py.File(self.path, "r") as handle:
                version = handle.attrs.get("aqa_store_version")
                if version != STORE_VERSION:
                    raise StoreError(
                        f"{self.path}: store version {version!r}, this reader understands {STORE_VERSION}"
                    )
                self.dataset = str(handle.attrs.get("dataset", ""))
                self._provenance = {k: read_attrs(handle["provenance"][k]) for k in handle["provenance"]}
                self._labels = json.loads(handle.attrs["labels_json"])
                self._catalog = {
                    kind: [(row["id"].decode(), row["shard"].decode()) for row in handle["catalog"][kind][()]]
                    for kind in handle["catalog"]
                }
        except OSError as error:
            raise StoreError(f"{self.path}: unreadable index file (truncated or corrupt): {error}") from error

    @property
    def kinds(self) -> list[str]:
        return sorted(self._catalog)

    def entries(self, kind: str) -> list[tuple[str, str]]:
        """The index's (video id, shard file) rows of one kind."""
        self._require_kind(kind)
        return list(self._catalog[kind])

    def provenance(self, kind: str) -> dict[str, Any]:
        self._require_kind(kind)
        return dict(self._provenance[kind])

    def labels(self, video_id: str) -> dict[str, Any]:
        return dict(self._labels[video_id])

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for lab in self._labels.values():
            counts[str(lab.get("split", "unlabelled"))] += 1
        return dict(counts)

    def video_ids(self, split: str | None = None, kind: str | None = None) -> list[str]:
        ids = [vid for vid, _ in self._catalog[kind]] if kind else list(self._labels)
        if split is not None:
            ids = [vid for vid in ids if self._labels[vid].get("split") == split]
        return sorted(ids, key=_natural_key)

    def load(
        self,
        kinds: str | list[str],
        split: str | None = None,
        ids: list[str] | None = None,
        dtype: np.dtype | None = None,
    ) -> FeatureSet:
        """Load ``kinds`` for the videos of ``split`` (or the given ``ids``) that have all of them.

        ``dtype=None`` keeps the stored dtype (fastest: a float16 store loads without conversion); stage two
        asks for float32."""
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        for kind in kinds:
            self._require_kind(kind)
        if ids is None:
            available = set.intersection(*(set(vid for vid, _ in self._catalog[k]) for k in kinds))
            ids = [vid for vid in self.video_ids(split) if vid in available]
            if not ids:
                raise StoreError(
                    f"{self.path}: no videos with {kinds} in split {split!r} (splits: {self.splits()})"
                )
        else:
            unknown = [vid for vid in ids if vid not in self._labels]
            if unknown:
                raise StoreError(f"{self.path}: unknown video ids {unknown[:5]}")
        position = {vid: i for i, vid in enumerate(ids)}
        features = {k: [None] * len(ids) for k in kinds}
        times = {k: [None] * len(ids) for k in kinds}
        for kind in kinds:
            by_shard: dict[str, list[str]] = defaultdict(list)
            for vid, shard in self._catalog[kind]:
                if vid in position:
                    by_shard[shard].append(vid)
            for shard, shard_ids in by_shard.items():
                path = shards_dir(self.path) / shard
                with open_shard(path) as handle:
                    for vid in shard_ids:
                        data, times[kind][position[vid]] = _read_checked(handle, path, vid, kind)
                        features[kind][position[vid]] = data.astype(dtype, copy=False) if dtype else data
            missing = [vid for vid in ids if features[kind][position[vid]] is None]
            if missing:
                raise StoreError(f"{self.path}: videos {missing[:5]} have no {kind!r} feature")
        return FeatureSet(
            ids=list(ids),
            features=features,
            times=times,
            labels=[self._labels[vid] for vid in ids],
            provenance={k: self._provenance[k] for k in kinds},
        )

    def _require_kind(self, kind: str) -> None:
        if kind not in self._catalog:
            raise StoreError(f"{self.path} has no feature kind {kind!r}; it has {self.kinds}")


def _read_checked(handle: h5py.File, path: Path, video_id: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One video's feature and time axis, refusing unreadable or bit-rotten bytes with the shard and video named."""
    where = f"shard {path}, video {video_id!r}, feature {kind!r}"
    try:
        group = handle["videos"][video_id][kind]
        data, times = group["data"][()], group["times"][()]
        expected = group.attrs.get(CHECKSUM_ATTR)
    except (KeyError, OSError, RuntimeError) as error:
        raise StoreError(f"{where}: unreadable ({error}); run `aqa-store check`") from error
    if expected is not None and int(expected) != checksum(data, times):
        raise StoreError(f"{where}: checksum mismatch (corrupted bytes); run `aqa-store check`")
    return data, times


def _natural_key(video_id: str):
    """Sort '2' before '10' and 'a_2' before 'a_10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", video_id)]
