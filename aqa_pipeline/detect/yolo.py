"""Person detection with ultralytics YOLO (COCO class 0, ``person``), batched over frames.

The detector only finds people; which person to keep and what to do when there is none is decided in
:mod:`aqa_pipeline.detect.crops`, so that those rules can be tested without a trained detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqa_pipeline.encoders.weights import resolve_weights, sha256_of

COCO_PERSON = 0


@dataclass(frozen=True)
class Detections:
    """The people found in one frame: ``boxes`` (N, 4) xyxy in original-frame pixels, ``scores`` (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class PersonDetector:
    """Wraps an ultralytics ``YOLO`` model; ``detect`` takes RGB uint8 frames, any number, in fixed-size batches.

    ``half`` uses fp16 on CUDA (ultralytics ignores it on CPU). ``device`` is an ultralytics device string
    (``"cpu"``, ``"cuda:0"``, ``"0"``).
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        weights_sha256: str | None,
        device: str = "cpu",
        half: bool = False,
        batch_size: int = 16,
        image_size: int = 640,
        min_confidence: float = 0.25,
        nms_iou: float = 0.7,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.name = name
        self.weights_sha256 = weights_sha256
        self.device = device
        self.half = half
        self.batch_size = batch_size
        self.image_size = image_size
        self.min_confidence = min_confidence
        self.nms_iou = nms_iou

    @classmethod
    def from_weights(
        cls, weights: str | Path | None = None, *, name: str = "yolo11n", **options: Any
    ) -> PersonDetector:
        """A trained detector: ``weights`` is an explicit checkpoint path, else the registry entry ``name``."""
        from ultralytics import YOLO

        path = resolve_weights(name, weights)
        return cls(YOLO(str(path), task="detect"), name=name, weights_sha256=sha256_of(path), **options)

    @classmethod
    def from_config(cls, config: str = "yolo11n.yaml", **options: Any) -> PersonDetector:
        """A randomly initialised detector built from an ultralytics model yaml, offline.

        For tests and benchmarks only: it costs the same compute as the trained model but finds nobody.
        """
        from ultralytics import YOLO

        return cls(
            YOLO(config, task="detect"), name=f"{config} (random init)", weights_sha256=None, **options
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "detector_weights_sha256": self.weights_sha256,
            "detector_image_size": self.image_size,
            "detector_min_confidence": self.min_confidence,
            "detector_nms_iou": self.nms_iou,
        }

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detect people in each RGB ``(H, W, 3)`` uint8 frame; returns one :class:`Detections` per frame."""
        for index, frame in enumerate(frames):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(
                    f"frame {index}: expected an RGB uint8 array of shape (H, W, 3), "
                    f"got dtype {frame.dtype} shape {frame.shape}"
                )
        detections: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            # ultralytics treats numpy images as OpenCV-style BGR (it flips them back to RGB itself), while our
            # decoder yields RGB: reverse the channel axis here, or the network would see red and blue swapped.
            batch = [
                np.ascontiguousarray(frame[..., ::-1]) for frame in frames[start : start + self.batch_size]
            ]
            results = self.model.predict(
                batch,
                classes=[COCO_PERSON],
                conf=self.min_confidence,
                iou=self.nms_iou,
                imgsz=self.image_size,
                device=self.device,
                quantize=16
                if self.half
                else None,  # this ultralytics' name for fp16 (``half`` is deprecated)
                verbose=False,
            )
            for result in results:
                boxes = result.boxes
                detections.append(
                    Detections(
                        boxes=boxes.xyxy.float().cpu().numpy().reshape(-1, 4),
                        scores=boxes.conf.float().cpu().numpy().reshape(-1),
                    )
                )
        return detections
