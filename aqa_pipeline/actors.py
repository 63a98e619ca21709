"""The athlete-centred feature kinds of ``aqa-extract``, computed per sample next to its clips.

Three kinds, each optional (:class:`ActorOptions` says which):

* ``boxes`` (TSA-Net's tube): NanoTrack V2 follows the athlete through every source frame of the sample, from a
  given first-frame box or the largest person the detector finds on it. One row (x1, y1, x2, y2, score) is stored
  per frame the clip encoder saw, in the encoder's order, ``times`` = source frame index. For a contiguous window
  (MTL-AQA, GDLT) that is every frame; for a subsampled preset (ACTION-NET's 5 fps) the sampled frames; a padded
  sample repeats its last frame's row. So clip ``k`` covers the rows from ``searchsorted(times, clip_time[k])``
  for ``clip_len`` rows, exactly the frames I3D saw, which is what the TSA head's tube masks assume.
* ``resnet_crops`` / ``mobilenet_crops`` (ACTION-NET's static stream): one frame per second of the sample
  (``crop_fps``), the athlete cropped and squashed to 224 x 224 (:func:`aqa_pipeline.detect.crops.crop_and_resize`),
  encoded by an ImageNet classifier trunk. The crop box is the largest (or most confident) detected person with
  the no-person rule of :mod:`aqa_pipeline.detect.crops` (the paper's rule), or the tracked box (``tracked``:
  no detector needed). The boxes, their scores and (for detector rules) their :class:`BoxSource` codes are
  stored as attributes of each video's feature.
* ``i3d_actor`` (FSPN's actor-centric stream): every I3D clip is re-cut around the athlete (:func:`actor_square`:
  the union of the clip's tracked boxes, enlarged by ``actor_margin`` on each side, made square, shifted into the
  frame where it fits, black beyond the frame) and resized to the preset's input size, so its clips line up one
  for one with the scene's ``i3d`` clips (same frames, same starts).

All of this runs where decoding runs (the DataLoader worker processes); the image encoder and I3D run in the main
process on the model's device. Each worker tracks up to ``track_batch`` samples together in one lock-step call
(:mod:`aqa_pipeline.extract.tracking`), then cuts each sample's crops and actor clips from its own track. Frames
are decoded again for those (a clip's crop is only known once its frames are tracked): memory stays bounded by
one chunk per tracked video and one clip, not one video.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from aqa_pipeline.detect.crops import (
    SELECTION_RULES,
    BoxSource,
    choose_boxes,
    crop_and_resize,
)
from aqa_pipeline.detect.yolo import PersonDetector
from aqa_pipeline.encoders.image import ImageEncoder
from aqa_pipeline.store.schema import KindProvenance
from aqa_pipeline.track.nanotrack import CONTEXT_AMOUNT, NanoTrackV2, TrackerConfig
from aqa_pipeline.video.decode import read_frames, read_windows

CROP_KINDS = {"resnet50": "resnet_crops", "mobilenet_v2": "mobilenet_crops"}
TRACKED = "tracked"
CROP_BOX_RULES = (*SELECTION_RULES[:2], TRACKED)  # largest, most_confident, tracked
CROP_SIZE = 224  # ACTION-NET's static-stream input

Box = Sequence[float]


@dataclass
class PersonCrops:
    """The static stream's inputs of one sample: crops (N, 3, 224, 224) float in [0, 1] and where they came from."""

    images: torch.Tensor
    times: np.ndarray  # (N,) source frame indices
    boxes: np.ndarray  # (N, 4) xyxy pixels
    scores: np.ndarray  # (N,) detector or tracker score
    sources: np.ndarray | None  # (N,) BoxSource codes for detector rules, None for tracked boxes


@dataclass
class ActorInputs:
    """Everything athlete-centred of one sample that needs its frames (made in the decoding worker)."""

    frame_size: tuple[int, int]  # (width, height) of the source
    boxes: np.ndarray | None = None  # (F, 5) x1, y1, x2, y2, score per frame the clip encoder saw
    box_times: np.ndarray | None = None  # (F,) their source frame indices
    crops: PersonCrops | None = None
    actor_clips: torch.Tensor | None = None  # (unique clips, L, S, S, 3) uint8 cut around the athlete


@dataclass
class ActorOptions:
    """Which athlete-centred kinds to extract, and the models and rules behind them.

    ``tracker`` (a loaded :class:`NanoTrackV2`) is needed for ``store_boxes``, ``actor_clips`` and the
    ``tracked`` crop rule; ``detector`` for the detector crop rules and for first-frame initialisation of videos
    without an ``init_boxes`` entry (one xyxy box for every sample, or a mapping video id → box).
    """

    store_boxes: bool = False
    actor_clips: bool = False
    crop_encoder: ImageEncoder | None = None
    tracker: NanoTrackV2 | None = None
    tracker_weights_sha256: str | None = None
    tracker_variant: str = "repo"
    init_boxes: Box | Mapping[str, Box] | None = None
    detector: PersonDetector | None = None
    crop_boxes: str = "largest"
    crop_normalisation: str = "minus1_1"  # ACTION-NET fed [-1, 1] to its ImageNet ResNet (faithful default)
    crop_fps: float = 1.0
    actor_margin: float = 0.1
    track_batch: int = 8  # samples each decoding worker tracks together in lock-step

    @property
    def any(self) -> bool:
        return self.store_boxes or self.actor_clips or self.crop_encoder is not None

    @property
    def needs_tracking(self) -> bool:
        return (
            self.store_boxes
            or self.actor_clips
            or (self.crop_encoder is not None and self.crop_boxes == TRACKED)
        )

    @property
    def crop_kind(self) -> str | None:
        return CROP_KINDS[self.crop_encoder.info.name] if self.crop_encoder is not None else None

    def check(self) -> None:
        """Refuse combinations that cannot work, before any video is decoded."""
        if self.crop_boxes not in CROP_BOX_RULES:
            raise ValueError(f"crop box rule {self.crop_boxes!r}: choose one of {', '.join(CROP_BOX_RULES)}")
        if self.needs_tracking and self.tracker is None:
            raise ValueError("boxes, actor clips and tracked crops need a tracker (NanoTrack V2 weights)")
        if self.needs_tracking and self.detector is None and not isinstance(self.init_boxes, Mapping):
            if self.init_boxes is None:
                raise ValueError("tracking needs a first-frame box: give an initial box or a person detector")
            parse_box(self.init_boxes, "initial box")
        if self.crop_encoder is not None and self.crop_boxes != TRACKED and self.detector is None:
            raise ValueError(
                f"crop box rule {self.crop_boxes!r} needs a person detector (or use the rule 'tracked')"
            )
        if self.track_batch < 1:
            raise ValueError(f"track_batch must be >= 1, got {self.track_batch}")
        if self.crop_fps <= 0 or self.actor_margin < 0:
            raise ValueError(
                f"crop_fps must be > 0 and actor_margin >= 0, got {self.crop_fps}, {self.actor_margin}"
            )

    def init_box(self, video_id: str) -> np.ndarray | None:
        """The user's first-frame box for this sample, or None (the detector decides)."""
        if isinstance(self.init_boxes, Mapping):
            box = self.init_boxes.get(video_id)
            if box is None and self.detector is None:
                raise ValueError(f"video {video_id}: no initial box in the box file and no person detector")
            return None if box is None else parse_box(box, f"initial box of {video_id}")
        return None if self.init_boxes is None else parse_box(self.init_boxes, "initial box")

    def provenance(
        self, scene_kind: str, scene: KindProvenance, frame_size: tuple[int, int] | None
    ) -> dict[str, KindProvenance]:
        """Provenance of this run's actor kinds, given the scene clip kind's; ``frame_size`` (w, h) when all
        sources share one (the TSA head reads it from here), else None (per video in the feature attributes)."""
        kinds: dict[str, KindProvenance] = {}
        tracking = self._tracking_provenance() if self.needs_tracking else {}
        size = _frame_size_entry(frame_size)
        if self.store_boxes:
            kinds["boxes"] = dataclasses.replace(
                scene,
                encoder="nanotrack_v2",
                weights="nanotrack_v2",
                weights_sha256=self.tracker_weights_sha256 or "unverified",
                weights_converter="none",
                dim=5,
                dtype="float32",
                normalisation="none",
                layer="",
                pooling="",
                times="source-video frame index of every frame the clip encoder saw, in its order (padding "
                f"repeats rows); clip k = the clip_len rows from searchsorted(times, {scene_kind} clip time k)",
                extra={
                    "columns": "x1,y1,x2,y2,score (source-frame pixels; frame 0 of a sample is the initial box, "
                    "score 1)",
                    **tracking,
                    **size,
                },
            )
        if self.crop_encoder is not None:
            kinds[self.crop_kind] = self._crop_provenance(scene, tracking, size)
        if self.actor_clips:
            kinds[f"{scene_kind}_actor"] = dataclasses.replace(
                scene,
                extra={
                    **scene.extra,
                    "crop": "per clip: the union of its frames' tracked boxes, enlarged by actor_margin x side on "
                    "each side, made square (longer side), shifted into the frame where it fits, black beyond "
                    "it, resized to the preset's input size; the same frames and clip starts as the scene kind",
                    "actor_margin": self.actor_margin,
                    **tracking,
                },
            )
        return kinds

    def _tracking_provenance(self) -> dict[str, Any]:
        config = TrackerConfig.of(self.tracker_variant)
        return {
            "tracker": "nanotrack_v2",
            "tracker_weights_sha256": self.tracker_weights_sha256 or "unverified",
            "tracker_variant": self.tracker_variant,
            "tracker_crop": "cv2",
            "tracker_penalty_k": config.penalty_k,
            "tracker_window_influence": config.window_influence,
            "tracker_lr": config.lr,
            "tracker_context_amount": CONTEXT_AMOUNT,
            "init": self._init_description(),
        }

    def _crop_provenance(self, scene: KindProvenance, tracking: dict, size: dict) -> KindProvenance:
        rule = self.crop_boxes
        encoder = self.crop_encoder.provenance()
        no_person = (
            "tracked box (never missing)"
            if rule == TRACKED
            else "nearest earlier frame's box, else nearest later, else the centred square min(H, W) (codes in "
            "the attribute box_sources: " + ", ".join(f"{s.value}={s.name}" for s in BoxSource) + ")"
        )
        return KindProvenance(
            encoder=encoder["encoder"],
            weights=encoder["weights"],
            weights_sha256=self.crop_encoder.weights_sha256 or "unverified",
            preset=scene.preset,
            transform=f"crop the box, squash to {CROP_SIZE}x{CROP_SIZE} (antialiased bilinear), "
            f"normalisation {self.crop_normalisation}",
            normalisation=self.crop_normalisation,
            dim=encoder["dim"],
            clip_len=1,
            fps=self.crop_fps,
            layer="last convolutional stage",
            pooling="global average",
            times=f"source-video frame index of each sampled frame ({self.crop_fps:g} per second of the sample, "
            "from its first frame)",
            extra={
                "box_rule": rule,
                "no_person_rule": no_person,
                "attributes": "crop_boxes (N, 4) xyxy pixels, box_scores (N,) (detector or tracker score)"
                + ("" if rule == TRACKED else ", box_sources (N,) codes"),
                **(self.detector.provenance() if self.detector is not None and rule != TRACKED else {}),
                **(tracking if rule == TRACKED else {}),
                **size,
            },
        )

    def _init_description(self) -> str:
        if isinstance(self.init_boxes, Mapping):
            fallback = " (others: largest first-frame person)" if self.detector is not None else ""
            return f"user boxes for {len(self.init_boxes)} videos{fallback}"
        if self.init_boxes is not None:
            box = [round(float(v), 2) for v in parse_box(self.init_boxes, "initial box")]
            return f"user box {box} (x1, y1, x2, y2) on every sample's first frame"
        return f"largest person detected on the sample's first frame ({self.detector.name})"


def _frame_size_entry(frame_size) -> dict[str, Any]:
    if frame_size is None:
        return {"frame_size_note": "sources differ in size: see each video's feature attribute frame_size"}
    return {"frame_size": [int(frame_size[0]), int(frame_size[1])]}


def parse_box(value: Any, what: str) -> np.ndarray:
    """An xyxy box from a sequence or ``"x1,y1,x2,y2"``, checked for x1 < x2 and y1 < y2."""
    try:
        box = np.asarray(
            [float(v) for v in (value.split(",") if isinstance(value, str) else value)], dtype=np.float64
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: expected x1,y1,x2,y2 numbers, got {value!r}") from error
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"{what}: expected x1,y1,x2,y2 with x1 < x2 and y1 < y2 (pixels), got {value!r}")
    return box


# ------------------------------------------------------------------------------------------------ geometry


def actor_square(boxes: np.ndarray, margin: float, frame_w: int, frame_h: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop around ``boxes`` (K, 4+) xyxy: their union, ``margin`` x its longer
    side added on each side, shifted to lie inside the frame where it fits (centred on the frame where not)."""
    x1, y1 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
    x2, y2 = float(boxes[:, 2].max()), float(boxes[:, 3].max())
    side = max(x2 - x1, y2 - y1, 1.0) * (1 + 2 * margin)
    side = max(2, int(math.ceil(side)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2

    def place(centre: float, extent: int) -> int:
        start = int(round(centre - side / 2))
        if side <= extent:
            return min(max(start, 0), extent - side)
        return (extent - side) // 2  # taller/wider than the frame: centred, padded on both sides

    return place(cx, frame_w), place(cy, frame_h), side


def cut_square(frame: np.ndarray, x0: int, y0: int, side: int, out: int) -> np.ndarray:
    """The ``side`` x ``side`` window at (x0, y0) of an RGB frame (black beyond it), resized to out x out
    (area averaging when shrinking, bilinear when enlarging, as the presets resize)."""
    height, width = frame.shape[:2]
    patch = np.zeros((side, side, 3), np.uint8)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if ix1 > ix0 and iy1 > iy0:
        patch[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    if side == out:
        return patch
    return cv2.resize(patch, (out, out), interpolation=cv2.INTER_AREA if side > out else cv2.INTER_LINEAR)


def crop_frame_indices(first: int, stop: int, fps: float, per_second: float) -> np.ndarray:
    """Source frames sampled ``per_second`` times a second over ``[first, stop)``, starting at ``first``."""
    step = fps / per_second
    return np.unique(
        np.round(first + np.arange(0.0, stop - first, step)).astype(np.int64).clip(first, stop - 1)
    )


# ------------------------------------------------------------------------------------------- per-sample work


def actor_inputs(
    options: ActorOptions,
    path: str,
    reader,
    first: int,
    stop: int,
    frame_indices: np.ndarray,
    unique_clip_frames: np.ndarray,
    fps: float,
    frame_hw: tuple[int, int],
    output_side: int,
    track: np.ndarray | None,
) -> ActorInputs:
    """Everything athlete-centred of one sample that needs its frames (runs in the decoding worker).

    ``track``: the (stop - first, 5) tracked rows of the sample's whole window ``[first, stop)`` of source frames
    (:mod:`aqa_pipeline.extract.tracking`; None when nothing needs tracking); the crops cover the same window and
    decode their own frames (tracking a wave of videos keeps none of its frames).
    ``frame_indices``: the sample-relative frames the clip encoder sees, in order; ``unique_clip_frames``: the
    (n, clip_len) sample-relative frames of each distinct clip.
    """
    height, width = frame_hw
    out = ActorInputs(frame_size=(int(width), int(height)))
    if options.store_boxes:
        out.boxes = track[frame_indices]
        out.box_times = first + frame_indices
    if options.crop_encoder is not None:
        crop_times = crop_frame_indices(first, stop, fps, options.crop_fps)
        out.crops = _crops(options, path, reader, crop_times, track, first, (height, width))
    if options.actor_clips:
        clips = np.empty(
            (len(unique_clip_frames), unique_clip_frames.shape[1], output_side, output_side, 3), np.uint8
        )
        windows = [first + clip for clip in unique_clip_frames]
        for position, frames in read_windows(path, windows, None, reader):
            rows = track[unique_clip_frames[position]]
            x0, y0, side = actor_square(rows, options.actor_margin, width, height)
            clips[position] = np.stack([cut_square(f, x0, y0, side, output_side) for f in frames])
        out.actor_clips = torch.from_numpy(clips)
    return out


def _crops(options, path, reader, times, track, first, frame_hw) -> PersonCrops:
    frames = list(read_frames(path, times, reader))
    if options.crop_boxes == TRACKED:
        rows = track[times - first]
        boxes, scores, sources = rows[:, :4], rows[:, 4], None
    else:
        chosen = choose_boxes(options.detector.detect(frames), frame_hw, options.crop_boxes)
        boxes, scores, sources = chosen.boxes, chosen.scores, chosen.sources
    crops = torch.stack([crop_and_resize(f, b, CROP_SIZE) for f, b in zip(frames, boxes, strict=True)])
    return PersonCrops(
        images=crops,
        times=times,
        boxes=np.asarray(boxes, np.float32),
        scores=np.asarray(scores, np.float32),
        sources=None if sources is None else np.asarray(sources, np.int8),
    )
