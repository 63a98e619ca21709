"""Tube masks (hand-computed cells, both geometries, tau, temporal OR) and the SiamMask boxes importer (synthetic
JSON in the released format)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from aqa_pipeline.track.siammask_boxes import TSA_FRAME_SIZE, load_siammask_boxes
from aqa_pipeline.track.tubes import as_polygons, frame_masks, tube_masks

W, H = TSA_FRAME_SIZE  # 640 x 360: one grid cell is 640/14 x 360/14 pixels in the full-frame geometry
CELL_W, CELL_H = W / 14, H / 14


def cells_box(col0: float, row0: float, col1: float, row1: float) -> np.ndarray:
    """A (1, 4) pixel box whose full-frame grid coordinates are the given cell units."""
    return np.array([[col0 * CELL_W, row0 * CELL_H, col1 * CELL_W, row1 * CELL_H]])


def expected(rows: range, cols: range) -> np.ndarray:
    mask = np.zeros((14, 14), bool)
    mask[rows.start : rows.stop, cols.start : cols.stop] = True
    return mask


def test_box_on_cell_borders_covers_exactly_its_cells():
    box = cells_box(2, 3, 5, 7)  # columns 2..4, rows 3..6; the borders only touch columns 5 / row 7
    np.testing.assert_array_equal(frame_masks(box, (W, H))[0], expected(range(3, 7), range(2, 5)))
    np.testing.assert_array_equal(frame_masks(box, (W, H), tau=1.0)[0], expected(range(3, 7), range(2, 5)))


def test_tau_thresholds_the_covered_fraction():
    box = cells_box(2.5, 3.5, 5.5, 7.5)  # half-covered border cells, quarter-covered corners
    np.testing.assert_array_equal(frame_masks(box, (W, H))[0], expected(range(3, 8), range(2, 6)))
    half = expected(range(3, 8), range(2, 6))
    half[[3, 3, 7, 7], [2, 5, 2, 5]] = False  # the four corner cells are only 1/4 covered
    np.testing.assert_array_equal(frame_masks(box, (W, H), tau=0.5)[0], half)
    np.testing.assert_array_equal(frame_masks(box, (W, H), tau=0.6)[0], expected(range(4, 7), range(3, 5)))


def test_rotated_polygon():
    # A diamond |x - 7.5| + |y - 7.5| <= 1 in cell units: it fills cell (7, 7) and a quarter of each neighbour.
    diamond = np.array([[7.5, 6.5, 8.5, 7.5, 7.5, 8.5, 6.5, 7.5]]) * np.tile([CELL_W, CELL_H], 4)
    plus = expected(range(6, 9), range(7, 8)) | expected(range(7, 8), range(6, 9))
    np.testing.assert_array_equal(frame_masks(diamond, (W, H))[0], plus)
    np.testing.assert_array_equal(
        frame_masks(diamond, (W, H), tau=0.5)[0], expected(range(7, 8), range(7, 8))
    )


def test_any_coverage_matches_the_authors_rasterisation_for_boxes():
    """TSA-Net's code: corners scaled to the grid, truncated to int, cv2.fillConvexPoly. Same cells for boxes whose
    edges do not fall exactly on a cell border."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 14, size=(50, 2, 2)), axis=1)  # (box, lo/hi, x/y) in cell units
    boxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1) * [CELL_W, CELL_H, CELL_W, CELL_H]
    ours = frame_masks(boxes, (W, H))
    for box, mask in zip(as_polygons(boxes), ours, strict=True):
        reference = np.zeros((14, 14), np.uint8)
        cells = (box.reshape(4, 2) / [CELL_W, CELL_H]).astype(np.int32)
        cv2.fillConvexPoly(reference, cells, 1)
        np.testing.assert_array_equal(mask, reference.astype(bool))


def test_crop_aware_differs_from_full_frame_as_the_geometric_quirk_says():
    # MTL-AQA preset: 640x360 -> 455x256 -> centre 224 crop, i.e. original x in [163, 478], y in [22.5, 337.5].
    box = np.array([[170.0, 30.0, 470.0, 330.0]])  # inside that crop, near its borders
    crop_aware = frame_masks(box, (W, H), geometry="crop_aware", resize=(455, 256), crop=224)[0]
    full_frame = frame_masks(box, (W, H), geometry="tsa_fullframe")[0]
    assert crop_aware.all()  # I3D sees the athlete fill the whole feature map
    # the authors' mapping puts it on columns 3..10 (170*14/640 = 3.7, 470*14/640 = 10.3), rows 1..12
    np.testing.assert_array_equal(full_frame, expected(range(1, 13), range(3, 11)))


def test_temporal_or_per_group_of_four_and_clips():
    boxes = np.repeat(cells_box(0, 0, 1, 1), 12, axis=0)
    boxes[5] = cells_box(13, 13, 14, 14)[0]  # one frame of the second group elsewhere
    steps = tube_masks(boxes, (W, H))
    assert steps.shape == (3, 14, 14) and steps.dtype == bool
    assert steps[:, 0, 0].all() and steps[1, 13, 13] and not steps[[0, 2], 13, 13].any()
    overlapping = tube_masks(boxes, (W, H), clip_starts=[0, 4], clip_len=8)  # frames 0-7, then 4-11
    assert overlapping.shape == (4, 14, 14)
    assert overlapping[:, 13, 13].tolist() == [False, True, True, False]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="shape"):
        tube_masks(np.zeros((4, 3)), (W, H))
    with pytest.raises(ValueError, match="tau"):
        tube_masks(np.zeros((4, 4)), (W, H), tau=0)
    with pytest.raises(ValueError, match="groups of 4"):
        tube_masks(np.zeros((6, 4)), (W, H))
    with pytest.raises(ValueError, match="reach past"):
        tube_masks(np.zeros((16, 4)), (W, H), clip_starts=[0, 4])
    with pytest.raises(ValueError, match="geometry"):
        tube_masks(np.zeros((4, 4)), (W, H), geometry="paper")


# ----------------------------------------------------------------------------------------- SiamMask importer

# Frame 0 is stored with corners 2 and 3 swapped (a "bowtie" if read as is); later frames are proper quads.
FRAME0_AS_RELEASED = [100, 50, 200, 50, 100, 150, 200, 150]
FRAME1 = [110, 55, 210, 60, 205, 160, 105, 155]
FRAME1_AS_RELEASED_FIRST = FRAME1[:4] + FRAME1[6:] + FRAME1[4:6]


@pytest.fixture
def released_json(tmp_path):
    path = tmp_path / "MTL_AQA_boxes.json"
    path.write_text(
        json.dumps(
            {
                "01_01": [FRAME0_AS_RELEASED, FRAME1, FRAME1, FRAME1],
                "01_02": [FRAME1_AS_RELEASED_FIRST] + [FRAME1] * 3,
            }
        )
    )
    return path


def test_import_fixes_frame_zero_and_gives_boxes(released_json):
    tracks = load_siammask_boxes(released_json)
    assert sorted(tracks) == ["01_01", "01_02"]
    track = tracks["01_01"]
    assert track.polygons.shape == (4, 8) and track.polygons.dtype == np.float32
    np.testing.assert_array_equal(track.polygons[0], [100, 50, 200, 50, 200, 150, 100, 150])
    np.testing.assert_array_equal(track.polygons[1], FRAME1)
    np.testing.assert_array_equal(track.boxes[:2], [[100, 50, 200, 150], [105, 55, 210, 160]])
    np.testing.assert_array_equal(tracks["01_02"].polygons[0], FRAME1)  # every video's frame 0 is re-ordered


def test_frame_zero_fix_matters_for_the_mask(released_json):
    fixed = load_siammask_boxes(released_json)["01_01"]
    raw = load_siammask_boxes(released_json, fix_first_frame=False)["01_01"]
    box_mask = frame_masks(fixed.boxes[:1], TSA_FRAME_SIZE)[0]
    assert box_mask.sum() > 0
    np.testing.assert_array_equal(frame_masks(fixed.polygons[:1], TSA_FRAME_SIZE)[0], box_mask)
    assert not np.array_equal(frame_masks(raw.polygons[:1], TSA_FRAME_SIZE, tau=0.5)[0], box_mask)


def test_importer_errors_name_file_and_video(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"dive_7": [[1, 2, 3, 4, 5, 6, 7]]}))
    with pytest.raises(ValueError, match=r"bad\.json \['dive_7'\].*8 numbers"):
        load_siammask_boxes(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_siammask_boxes(path)
    path.write_text(json.dumps({"a": [[[1, 2], [3, 4], [5, 6], [7, 8]]]}))  # corner pairs are accepted
    assert load_siammask_boxes(path, fix_first_frame=False)["a"].polygons.tolist() == [
        [1, 2, 3, 4, 5, 6, 7, 8]
    ]
