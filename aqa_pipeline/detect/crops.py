"""Which person to crop in each sampled frame, what to do when there is none, and the crop itself.

ACTION-NET's static stream (MM'20) encodes the athlete every second: the largest detected person, cropped and
resized to 224 x 224 **without** keeping the aspect ratio, normalised to [-1, 1] (even though its ResNet-50 is
ImageNet-trained). The cropping step is not in the authors' repository; the largest-person rule follows the paper.

No-person rule (explicit, recorded per frame in :class:`BoxSource`): a frame where the detector finds nobody
reuses the chosen box of the nearest earlier frame; before the first detection, the nearest later frame's box;
in a video with no detection at all, the centred square of side ``min(H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from aqa_pipeline.detect.yolo import Detections, PersonDetector
from aqa_pipeline.encoders.image import ImageEncoder
from aqa_pipeline.video.presets import NORMALISATIONS

SelectionRule = Literal["largest", "most_confident", "closest_to_previous"]
SELECTION_RULES: tuple[str, ...] = ("largest", "most_confident", "closest_to_previous")

# Names and (mean, std) shared with the clip presets. "minus1_1" is what ACTION-NET fed its ImageNet ResNet-50
# (faithful default); "imagenet" is what that network was trained with (better features, not the paper's).
Normalisation = Literal["minus1_1", "imagenet"]


class BoxSource(IntEnum):
    """Where a frame's crop box came from (stored per frame next to the boxes)."""

    DETECTED = 0  # a person detected in this frame, picked by the selection rule
    PREVIOUS = 1  # nobody here: the box of the nearest earlier frame
    NEXT = 2  # nobody here or before: the box of the nearest later frame
    CENTRE = 3  # nobody in the whole video: centred square of side min(H, W)


@dataclass(frozen=True)
class ChosenBoxes:
    """One box per frame: ``boxes`` (N, 4) xyxy pixels, ``sources`` (N,) :class:`BoxSource` codes, ``scores``
    (N,) detector confidence of the chosen person (NaN where the box was not detected in that frame)."""

    boxes: np.ndarray
    sources: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class PersonCropFeatures:
    """The static stream of one video: ``features`` (N, D) float32 per sampled frame, ``times`` (N,) frame
    indices, and the :class:`ChosenBoxes` they were cropped from."""

    features: np.ndarray
    times: np.ndarray
    boxes: ChosenBoxes


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    top_left = np.maximum(boxes[:, :2], box[:2])
    bottom_right = np.minimum(boxes[:, 2:], box[2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    union = _areas(boxes) + _areas(box[None])[0] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def select_person(detections: Detections, rule: SelectionRule, previous_box: np.ndarray | None) -> int | None:
    """Index of the person to keep in one frame, or None when nobody was detected.

    ``closest_to_previous`` keeps the best IoU with ``previous_box`` (the last chosen box), breaking ties (e.g. no
    overlap at all) by centre distance; without a previous box it falls back to ``largest``.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {', '.join(SELECTION_RULES)}")
    if len(detections) == 0:
        return None
    boxes = detections.boxes
    if rule == "most_confident":
        return int(np.argmax(detections.scores))
    if rule == "closest_to_previous" and previous_box is not None:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        distance = np.linalg.norm(centres - (previous_box[:2] + previous_box[2:]) / 2, axis=1)
        # lexsort sorts by the last key first: highest IoU, then smallest distance
        return int(np.lexsort((distance, -_iou(boxes, previous_box)))[0])
    return int(np.argmax(_areas(boxes)))


def centre_square(height: int, width: int) -> np.ndarray:
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32)


def choose_boxes(
    detections: Sequence[Detections], frame_size: tuple[int, int], rule: SelectionRule = "largest"
) -> ChosenBoxes:
    """Apply the selection rule to every frame, then the no-person rule (module docstring) to the gaps.

    ``frame_size`` is ``(height, width)`` of the video's frames.
    """
    count = len(detections)
    boxes = np.zeros((count, 4), dtype=np.float32)
    sources = np.full(count, BoxSource.DETECTED, dtype=np.int8)
    scores = np.full(count, np.nan, dtype=np.float32)
    detected = np.zeros(count, dtype=bool)
    previous_box = None
    for frame, frame_detections in enumerate(detections):
        index = select_person(frame_detections, rule, previous_box)
        if index is not None:
            boxes[frame] = previous_box = frame_detections.boxes[index]
            scores[frame] = frame_detections.scores[index]
            detected[frame] = True
    if not detected.any():
        boxes[:] = centre_square(*frame_size)
        sources[:] = BoxSource.CENTRE
        return ChosenBoxes(boxes, sources, scores)
    first = int(np.argmax(detected))
    boxes[:first] = boxes[first]
    sources[:first] = BoxSource.NEXT
    for frame in range(first + 1, count):
        if not detected[frame]:
            boxes[frame] = boxes[frame - 1]
            sources[frame] = BoxSource.PREVIOUS
    return ChosenBoxes(boxes, sources, scores)


def crop_and_resize(frame: np.ndarray, box: np.ndarray, size: int = 224) -> torch.Tensor:
    """Crop ``box`` (xyxy, clipped to the frame) out of an RGB uint8 frame and squash it to ``size`` x ``size``.

    Returns (3, size, size) float32 in [0, 1]. Antialiased bilinear resizing, which matches the PIL ``Resize`` that
    ACTION-NET applied to its saved crops; the aspect ratio is deliberately not kept (faithful).
    """
    height, width = frame.shape[:2]
    x0 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box[3]), y0 + 1, height))
    crop = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).permute(2, 0, 1)[None].float()
    resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (resized[0] / 255.0).clamp_(0.0, 1.0)


def normalise(images: torch.Tensor, normalisation: Normalisation) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] → the encoder's input range."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(
            f"unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}"
        )
    mean, std = (torch.tensor(v, dtype=images.dtype).view(1, 3, 1, 1) for v in NORMALISATIONS[normalisation])
    return (images - mean) / std


def crop_features_for_video(
    frames: Sequence[np.ndarray],
    frame_indices: Sequence[int] | np.ndarray,
    detector: PersonDetector,
    encoder: ImageEncoder,
    rule: SelectionRule = "largest",
    normalisation: Normalisation = "minus1_1",
    crop_size: int = 224,
) -> PersonCropFeatures:
    """The static stream of one video: detect people in the sampled RGB frames (e.g. 1 fps), choose one box per
    frame, crop, normalise and encode. ``frame_indices`` are the frames' indices in the video (stored as times)."""
    if len(frames) == 0:
        raise ValueError("crop_features_for_video: no frames given")
    if len(frames) != len(frame_indices):
        raise ValueError(f"{len(frames)} frames but {len(frame_indices)} frame indices")
    chosen = choose_boxes(detector.detect(frames), frames[0].shape[:2], rule)
    crops = torch.stack([crop_and_resize(f, b, crop_size) for f, b in zip(frames, chosen.boxes, strict=True)])
    features = encoder.encode(normalise(crops, normalisation))
    return PersonCropFeatures(
        features=features, times=np.asarray(frame_indices, dtype=np.int64), boxes=chosen
    )
