"""Importer for the SiamMask boxes TSA-Net's authors released for MTL-AQA and AQA-7 (and FR-FS).

Format (as their data loader reads it): one JSON object per file, ``{video_key: [frame_0, frame_1, ...]}``, each
frame 8 numbers ``x0, y0, x1, y1, x2, y2, x3, y3`` - the corners of SiamMask's rotated rectangle, in pixels of the
original 640x360 frame. Frame 0 holds the initial box with its last two corners in the opposite order; the loader
swaps corners 2 and 3 there (as the authors' code does), so that every polygon is a proper quadrilateral.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TSA_FRAME_SIZE = (640, 360)  # (width, height) the released coordinates refer to


@dataclass(frozen=True)
class SiamMaskTrack:
    """One video's released track: ``polygons`` (n_frames, 8) float32 corners, ``boxes`` (n_frames, 4) xyxy float32
    (the polygons' axis-aligned bounds)."""

    polygons: np.ndarray
    boxes: np.ndarray


def polygon_bounds(polygons: np.ndarray) -> np.ndarray:
    """(n, 8) corner lists -> (n, 4) axis-aligned xyxy boxes."""
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1).astype(np.float32)


def _parse_frames(frames: object, where: str) -> np.ndarray:
    if not isinstance(frames, list) or not frames:
        raise ValueError(
            f"{where}: expected a non-empty list of per-frame polygons, got {type(frames).__name__}"
        )
    try:
        polygons = np.asarray(frames, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: frames are not all lists of numbers ({error})") from None
    if polygons.ndim == 3 and polygons.shape[1:] == (4, 2):  # tolerate [[x, y] x 4] per frame
        polygons = polygons.reshape(len(polygons), 8)
    if polygons.ndim != 2 or polygons.shape[1] != 8:
        raise ValueError(
            f"{where}: expected 8 numbers (4 corners) per frame, got array of shape {polygons.shape}"
        )
    if not np.isfinite(polygons).all():
        raise ValueError(
            f"{where}: non-finite coordinates in frame {int(np.argwhere(~np.isfinite(polygons))[0, 0])}"
        )
    return polygons


def load_siammask_boxes(path: str | Path, fix_first_frame: bool = True) -> dict[str, SiamMaskTrack]:
    """Read a released boxes JSON into ``{video_key: SiamMaskTrack}``.

    ``fix_first_frame`` swaps corners 2 and 3 of frame 0 (the authors' loader does this; turn it off only for files
    already fixed).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{video_key: [[x0, y0, ..., x3, y3], ...]}}")
    tracks = {}
    for key, frames in raw.items():
        polygons = _parse_frames(frames, f"{path} [{key!r}]")
        if fix_first_frame:
            polygons[0, [4, 5, 6, 7]] = polygons[0, [6, 7, 4, 5]]
        tracks[str(key)] = SiamMaskTrack(polygons=polygons, boxes=polygon_bounds(polygons))
    return tracks
