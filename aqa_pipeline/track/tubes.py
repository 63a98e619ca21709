"""Per-frame boxes or polygons -> TSA-Net tube masks on I3D's mid-level feature map.

TSA-Net inserts its attention after I3D's ``MaxPool3d_4a``/``Mixed_4*``: 14x14 cells, one time step per 4 input
frames. The mask marks the cells the athlete's tube occupies.

Two geometries (``geometry=``):

* ``"tsa_fullframe"`` - the authors' code: the *full* frame (W x H) is mapped onto the 14x14 grid.
* ``"crop_aware"`` - what I3D actually sees: the frame resized to ``resize`` (w, h) and centre-cropped to ``crop``
  (torchvision's CenterCrop offsets), so the grid covers only the crop. For the MTL-AQA preset (455x256 -> 224) the
  full-frame grid is about twice too wide horizontally; this geometry fixes that.

Coverage (``tau=``): ``None`` marks every cell the polygon overlaps with positive area ("any coverage", what the
code's ``cv2.fillConvexPoly`` + sum + ``bool`` amounts to); a float marks cells whose covered fraction is at least
``tau`` (the paper's threshold). Time: each group of ``frames_per_step`` frames is OR-ed (a cell is in the tube at a
step if it is marked in any of its frames), per 16-frame clip when ``clip_starts`` is given.

Rasterisation note: the authors' code truncates the vertices to integer cells before ``fillConvexPoly``; for
axis-aligned boxes that equals any-coverage except when an edge lies exactly on a cell border (the code then also
marks the cell beyond it). We compute overlap exactly instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Geometry = Literal["tsa_fullframe", "crop_aware"]


def as_polygons(boxes_or_polygons: np.ndarray) -> np.ndarray:
    """(T, 4) xyxy boxes or (T, 8) corner lists (e.g. (T, 5) store rows: the score column is dropped) -> (T, 8)."""
    a = np.asarray(boxes_or_polygons, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] in (4, 5):
        x1, y1, x2, y2 = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1)
    if a.ndim == 2 and a.shape[1] == 8:
        return a
    raise ValueError(f"expected (T, 4) xyxy boxes, (T, 5) box rows or (T, 8) polygons, got shape {a.shape}")


def center_crop_offsets(resize: tuple[int, int], crop: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """(x offset, y offset, crop width, crop height) of a centre crop, rounded as torchvision's CenterCrop does."""
    crop_w, crop_h = (crop, crop) if isinstance(crop, int) else crop
    if crop_w > resize[0] or crop_h > resize[1]:
        raise ValueError(f"crop {crop_w}x{crop_h} is larger than the resized frame {resize[0]}x{resize[1]}")
    return int(round((resize[0] - crop_w) / 2)), int(round((resize[1] - crop_h) / 2)), crop_w, crop_h


def to_grid(
    polygons: np.ndarray,
    frame_size: tuple[int, int],
    geometry: Geometry,
    grid: int,
    resize: tuple[int, int],
    crop: int | tuple[int, int],
) -> np.ndarray:
    """Polygon corners in frame pixels -> the same corners in grid-cell units (cell (i, j) spans [j, j+1] x [i, i+1])."""
    width, height = frame_size
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    if geometry == "tsa_fullframe":
        gx, gy = xs * grid / width, ys * grid / height
    elif geometry == "crop_aware":
        ox, oy, crop_w, crop_h = center_crop_offsets(resize, crop)
        gx = (xs * resize[0] / width - ox) * grid / crop_w
        gy = (ys * resize[1] / height - oy) * grid / crop_h
    else:
        raise ValueError(f"unknown mask geometry {geometry!r}; expected 'tsa_fullframe' or 'crop_aware'")
    return np.stack([gx, gy], axis=-1)  # (T, 4, 2)


def _edges(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start points and direction vectors of the polygon edges, (T, 4, 2) each."""
    return corners, np.roll(corners, -1, axis=1) - corners


def cell_overlap(corners: np.ndarray, grid: int) -> np.ndarray:
    """(T, grid, grid) bool: the convex polygon and the cell intersect with positive area (separating-axis test)."""
    cells = np.arange(grid, dtype=np.float64)
    lo_x, lo_y = corners[..., 0].min(1), corners[..., 1].min(1)
    hi_x, hi_y = corners[..., 0].max(1), corners[..., 1].max(1)
    overlap_x = (lo_x[:, None] < cells + 1) & (hi_x[:, None] > cells)  # (T, grid) over columns
    overlap_y = (lo_y[:, None] < cells + 1) & (hi_y[:, None] > cells)
    overlap = overlap_y[:, :, None] & overlap_x[:, None, :]
    # Polygon edge normals as the remaining axes; degenerate (zero-length) edges cannot separate.
    _, direction = _edges(corners)
    normal = np.stack([-direction[..., 1], direction[..., 0]], axis=-1)  # (T, 4, 2)
    poly_proj = np.einsum("tkd,tjd->tkj", normal, corners)  # (T, edge, vertex)
    p_lo, p_hi = poly_proj.min(2), poly_proj.max(2)  # (T, 4)
    offsets = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
    # projection of cell (i, j)'s corners: n_x * (j + ox) + n_y * (i + oy)
    base = (
        normal[..., 0, None, None] * cells[None, None, None, :] + normal[..., 1, None, None] * cells[:, None]
    )
    corner_proj = base[..., None] + np.einsum("tkd,cd->tkc", normal, offsets)[:, :, None, None, :]
    c_lo, c_hi = corner_proj.min(-1), corner_proj.max(-1)  # (T, 4, grid, grid)
    separated = (c_lo >= p_hi[..., None, None]) | (c_hi <= p_lo[..., None, None])
    degenerate = (np.abs(normal).sum(-1) == 0)[..., None, None]
    return overlap & ~(separated & ~degenerate).any(axis=1)


def cell_coverage(corners: np.ndarray, grid: int, samples: int = 16) -> np.ndarray:
    """(T, grid, grid) float: fraction of each cell inside the convex polygon, from samples x samples points per
    cell (resolution 1/samples^2; exact for axis-aligned boxes on multiples of 1/samples)."""
    points = (np.arange(grid * samples, dtype=np.float64) + 0.5) / samples
    start, direction = _edges(corners)
    clockwise = np.ones((len(corners), grid * samples, grid * samples), dtype=bool)
    anticlockwise = np.ones_like(clockwise)
    for k in range(4):  # inside a convex polygon = on the same side of every edge
        rel_x = points[None, None, :] - start[:, k, 0, None, None]
        rel_y = points[None, :, None] - start[:, k, 1, None, None]
        cross = direction[:, k, 0, None, None] * rel_y - direction[:, k, 1, None, None] * rel_x
        clockwise &= cross <= 0
        anticlockwise &= cross >= 0
    inside = clockwise | anticlockwise  # either corner order
    return inside.reshape(len(corners), grid, samples, grid, samples).mean(axis=(2, 4))


def frame_masks(
    boxes_or_polygons: np.ndarray,
    frame_size: tuple[int, int],
    *,
    geometry: Geometry = "tsa_fullframe",
    tau: float | None = None,
    grid: int = 14,
    resize: tuple[int, int] = (455, 256),
    crop: int | tuple[int, int] = 224,
) -> np.ndarray:
    """(T, grid, grid) bool per-frame masks (before temporal pooling); arguments as in :func:`tube_masks`."""
    if tau is not None and not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1] or None (any coverage), got {tau}")
    corners = to_grid(as_polygons(boxes_or_polygons), frame_size, geometry, grid, resize, crop)
    if tau is None:
        return cell_overlap(corners, grid)
    return cell_coverage(corners, grid) >= tau


def tube_masks(
    boxes_or_polygons: np.ndarray,
    frame_size: tuple[int, int],
    *,
    geometry: Geometry = "tsa_fullframe",
    tau: float | None = None,
    clip_starts: Sequence[int] | None = None,
    clip_len: int = 16,
    frames_per_step: int = 4,
    grid: int = 14,
    resize: tuple[int, int] = (455, 256),
    crop: int | tuple[int, int] = 224,
) -> np.ndarray:
    """TSA tube masks, (n_steps, grid, grid) bool, steps of all clips concatenated in order (as TSA-Net does).

    ``boxes_or_polygons``: per-frame (T, 4) xyxy, (T, 5) store rows or (T, 8) polygons in pixels of a
    ``frame_size`` = (width, height) frame. ``clip_starts``: first frame of each ``clip_len``-frame clip (e.g.
    MUSDL's 0, 10, ..., 80, 87); None = the whole sequence in consecutive groups. ``resize``/``crop`` only matter
    for ``geometry="crop_aware"`` and must match the encoder preset's transform.
    """
    per_frame = frame_masks(
        boxes_or_polygons, frame_size, geometry=geometry, tau=tau, grid=grid, resize=resize, crop=crop
    )
    n_frames = len(per_frame)
    if clip_starts is None:
        if n_frames % frames_per_step:
            raise ValueError(
                f"{n_frames} frames do not split into groups of {frames_per_step}; pass clip_starts"
            )
        frames = per_frame
    else:
        if clip_len % frames_per_step:
            raise ValueError(f"clip_len {clip_len} is not a multiple of frames_per_step {frames_per_step}")
        index = np.asarray(clip_starts, dtype=np.int64)[:, None] + np.arange(clip_len)
        if index.size and (index.min() < 0 or index.max() >= n_frames):
            raise ValueError(
                f"clips {list(clip_starts)} of {clip_len} frames reach past the {n_frames} boxes given"
            )
        frames = per_frame[index.reshape(-1)]
    return frames.reshape(-1, frames_per_step, grid, grid).any(axis=1)
