"""What a finished video becomes in the store: one :class:`Feature` per kind, plus the run's failure list.

The store writer (:class:`aqa_pipeline.store.StoreWriter`) makes it resumable and atomic per video; this module
only turns a :class:`PendingVideo`'s outputs into the store's per-kind arrays with their time axes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aqa_pipeline.encoders.base import OutputKind
from aqa_pipeline.extract.batching import ACTOR, SCENE, PendingVideo
from aqa_pipeline.extract.source import FailedItem
from aqa_pipeline.store import Feature


@dataclass(frozen=True)
class RunKinds:
    """The kinds one extraction run writes: the encoder's, and the optional athlete-centred ones."""

    scene: list[OutputKind]
    actor: str | None = None  # "<primary>_actor": the primary kind on athlete-centred clips
    boxes: bool = False
    crops: str | None = None  # resnet_crops / mobilenet_crops


def video_features(entry: PendingVideo, kinds: RunKinds) -> dict[str, Feature]:
    item = entry.item
    attrs = {"padded_frames": int(item.padded_frames), "window": list(item.window), "source_fps": item.fps}
    times = np.asarray(item.times, dtype=np.int64)
    features = {
        out.kind: Feature(entry.per_clip(SCENE, out.kind).astype(out.dtype), times, attrs)
        for out in kinds.scene
    }
    if kinds.actor is not None:
        primary = kinds.scene[0].kind
        features[kinds.actor] = Feature(entry.per_clip(ACTOR, primary).astype(np.float32), times, attrs)
    actor = item.actor
    frame_size = [int(v) for v in actor.frame_size] if actor is not None else []
    if kinds.boxes:
        features["boxes"] = Feature(
            np.asarray(actor.boxes, dtype=np.float32),
            np.asarray(actor.box_times, dtype=np.int64),
            {**attrs, "frame_size": frame_size},
        )
    if kinds.crops is not None:
        crops = actor.crops
        crop_attrs = {
            **attrs,
            "frame_size": frame_size,
            "crop_boxes": crops.boxes,
            "box_scores": crops.scores,
        }
        if crops.sources is not None:
            crop_attrs["box_sources"] = crops.sources
        features[kinds.crops] = Feature(
            entry.crop_features.astype(np.float32), np.asarray(crops.times, dtype=np.int64), crop_attrs
        )
    return features


def write_failures(path: Path, failures: list[FailedItem]) -> Path | None:
    """This run's failures, one JSON object per line; no file when nothing failed."""
    if not failures:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(f)) + "\n" for f in failures))
    return path
