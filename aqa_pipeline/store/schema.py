"""The on-disk layout of a feature store, shared by the writer, the index and the reader.

A store is an index file (``features.h5``) plus shard files in ``features.shards/``::

    shard  /                       attrs: aqa_store_version, dataset, kinds (json), complete, created, package_version
           /provenance/<kind>      attrs: encoder, preset, weights_sha256, transform, dim, ... (one group per kind)
           /videos/<id>            attrs: the video's labels (score, split, tes, ...) and complete=True once written
           /videos/<id>/<kind>/data   (T, ...) features
           /videos/<id>/<kind>/times  (T,) time axis: clip start frames, frame indices or seconds (see provenance)
    index  /                       attrs: aqa_store_version, dataset
           /provenance/<kind>      copied from the shards (all shards of a kind must agree)
           /videos/<id>            labels as attrs; /videos/<id>/<kind> is an h5py ExternalLink into its shard
           /catalog/<kind>         (n,) records (video id, shard file) so readers open each shard once

Why external links rather than virtual datasets: features have a different length T per video, which a virtual
dataset cannot express without padding, and links let ``h5py.File("features.h5")["videos/x/i3d/data"]`` work for
anyone with plain h5py while the shards stay the single source of truth (the index is derived and rebuilt).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

STORE_VERSION = 1
SHARDS_SUFFIX = ".shards"
PARTIAL_SUFFIX = ".partial"
# Provenance fields whose disagreement makes two feature sets incompatible (they came from different models or
# sampling recipes); other fields (date, package version, source paths) may differ between shards.
COMPATIBILITY_FIELDS = (
    "encoder",
    "preset",
    "weights_sha256",
    "transform",
    "dim",
    "clip_len",
    "fps",
    "normalisation",
)
# The weights hash of imported features: the release names its checkpoint but ships no file to hash.
PUBLISHED_FEATURES = "unknown (published features)"


class StoreError(Exception):
    """A store is missing, corrupt or inconsistent; the message names the file and video."""


@dataclass
class Feature:
    """One feature kind of one video: ``data`` (T, ...) with its time axis ``times`` (T,)."""

    data: np.ndarray
    times: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KindProvenance:
    """How one feature kind was made: written once per kind into every shard (``/provenance/<kind>``), read back
    by stage two (compatibility checks of ``aqa-fit --predict``), the report and ``aqa-score``.

    ``extra`` holds kind-specific fields (a map's layout, the tracker's settings, crop rules); they are stored as
    attributes beside the common ones.
    """

    encoder: str
    preset: str
    weights_sha256: str
    transform: str  # JSON of the preset (or a description for non-preset kinds)
    dim: int | list[int] | tuple[int, ...]
    clip_len: int
    fps: float | str
    normalisation: str
    dtype: str = "float32"
    weights: str = ""  # registry entry or file the weights came from
    weights_converter: str = "none"
    layer: str = ""
    pooling: str = ""
    frame_rate: str = ""
    clip_starts: list[int] | str = ""
    times: str = ""
    padding: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        attrs = {k: v for k, v in asdict(self).items() if k != "extra"}
        clash = set(attrs) & set(self.extra)
        if clash:
            raise ValueError(f"provenance extra fields {sorted(clash)} shadow common ones")
        attrs["dim"] = list(self.dim) if isinstance(self.dim, (list, tuple)) else int(self.dim)
        return {**attrs, **self.extra}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> KindProvenance:
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = {f.name for f in fields(cls) if f.name in names and f.default is MISSING} - set(attrs)
        if missing:
            raise StoreError(f"provenance lacks the fields {sorted(missing)}")
        known = {k: v for k, v in attrs.items() if k in names}
        return cls(**known, extra={k: v for k, v in attrs.items() if k not in names})


def shards_dir(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + SHARDS_SUFFIX)


def shard_name(kinds: list[str], shard_index: int, num_shards: int) -> str:
    return f"{'+'.join(sorted(kinds))}-{shard_index:05d}-of-{num_shards:05d}.h5"


def encode_attr(value: Any) -> Any:
    """HDF5 attributes take numbers and strings; anything else (lists, dicts) is stored as JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray):
        return value
    return "json:" + json.dumps(value, sort_keys=True)


def decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(node) -> dict[str, Any]:
    return {key: decode_attr(value) for key, value in node.attrs.items()}


def incompatibilities(kind: str, existing: dict[str, Any], incoming: dict[str, Any]) -> list[str]:
    """Human-readable differences that forbid mixing two provenance records of one feature kind."""
    problems = []
    published = PUBLISHED_FEATURES in (existing.get("weights_sha256"), incoming.get("weights_sha256"))
    same_checkpoint = published and existing.get("weights") == incoming.get("weights")
    for key in COMPATIBILITY_FIELDS:
        if key == "weights_sha256" and same_checkpoint:
            continue  # a release made with the named checkpoint: only the name can be compared
        if key in existing or key in incoming:
            a, b = existing.get(key), incoming.get(key)
            if a != b:
                problems.append(f"{kind}.{key}: {a!r} vs {b!r}")
    return problems


def check_feature(video_id: str, kind: str, feature: Feature, dim: Any) -> None:
    """Refuse features that would poison training: NaN/inf, wrong trailing shape, misaligned time axis."""
    data = np.asarray(feature.data)
    where = f"video {video_id!r}, feature {kind!r}"
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise StoreError(f"{where}: dtype {data.dtype} is not numeric")
    if data.ndim == 0 or data.shape[0] == 0:
        raise StoreError(f"{where}: empty feature array {data.shape} (a video must have at least one clip)")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise StoreError(f"{where}: {bad} NaN/inf values; refusing to store them")
    if dim is not None:
        expected = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
        if tuple(data.shape[1:]) != expected:
            raise StoreError(
                f"{where}: trailing shape {tuple(data.shape[1:])} but the store's provenance says {expected}"
            )
    times = np.asarray(feature.times)
    if not np.issubdtype(times.dtype, np.number):
        raise StoreError(f"{where}: times dtype {times.dtype} is not numeric")
    if times.shape != (data.shape[0],):
        raise StoreError(
            f"{where}: times has shape {times.shape}, expected ({data.shape[0]},) to match the data"
        )
