"""Person detection and crops: a YOLO built offline from its config on a real frame; the selection, no-person and
crop rules on hand-made boxes (random weights find nobody, so the rules are tested without a detector)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.detect.crops import (
    BoxSource,
    centre_square,
    choose_boxes,
    crop_and_resize,
    crop_features_for_video,
    normalise,
    select_person,
)
from aqa_pipeline.detect.yolo import Detections, PersonDetector
from aqa_pipeline.encoders.image import ImageEncoder

torch.set_num_threads(1)


def _detections(*boxes_and_scores: tuple[list[float], float]) -> Detections:
    boxes = np.array([b for b, _ in boxes_and_scores], dtype=np.float32).reshape(-1, 4)
    return Detections(boxes=boxes, scores=np.array([s for _, s in boxes_and_scores], dtype=np.float32))


NOBODY = _detections()
SMALL_CONFIDENT = ([0, 0, 10, 10], 0.9)
LARGE_UNSURE = ([50, 50, 150, 250], 0.4)
MEDIUM = ([100, 0, 160, 60], 0.6)


@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    return PersonDetector.from_config("yolo11n.yaml", batch_size=2, image_size=320)


@pytest.fixture(scope="module")
def real_frame(data_dir) -> np.ndarray:
    import decord

    return decord.VideoReader(str(data_dir / "videos" / "weightlifting_clean_and_jerk.mp4"))[0].asnumpy()


def test_yolo_from_config_runs_offline_on_real_frames(
    detector: PersonDetector, real_frame: np.ndarray
) -> None:
    seen = []
    detector.model.add_callback("on_predict_batch_end", lambda predictor: seen.extend(predictor.batch[1]))
    frames = [real_frame, real_frame[::-1].copy(), real_frame]  # 3 frames, batch_size 2: two batches
    detections = detector.detect(frames)
    assert len(detections) == 3
    for found in detections:
        assert found.boxes.shape == (len(found), 4) and found.scores.shape == (len(found),)
    # ultralytics must receive BGR: the frame handed over is our RGB frame with its channels reversed
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[0], real_frame[..., ::-1])


def test_forced_detections_come_back_in_frame_pixels(real_frame: np.ndarray) -> None:
    """Random weights find nobody; raising the class biases makes every anchor a confident 'person', which checks
    that boxes are mapped back from the letterboxed input to the original frame and filtered to class 0."""
    detector = PersonDetector.from_config(
        "yolo11n.yaml", image_size=320
    )  # fresh: ultralytics copies the model
    for branch in detector.model.model.model[-1].cv3:  # once, at the first predict
        branch[-1].bias.data.fill_(8.0)
    (found,) = detector.detect([real_frame])
    height, width = real_frame.shape[:2]
    assert len(found) > 0
    assert (found.boxes[:, [0, 2]] >= 0).all() and (found.boxes[:, [0, 2]] <= width).all()
    assert (found.boxes[:, [1, 3]] >= 0).all() and (found.boxes[:, [1, 3]] <= height).all()
    assert (found.scores > 0.25).all()


def test_detector_rejects_non_rgb_uint8(detector: PersonDetector) -> None:
    with pytest.raises(ValueError, match=r"frame 1: expected an RGB uint8.*float32"):
        detector.detect([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])


def test_selection_rules() -> None:
    frame = _detections(SMALL_CONFIDENT, LARGE_UNSURE, MEDIUM)
    assert select_person(frame, "largest", None) == 1
    assert select_person(frame, "most_confident", None) == 0
    # best IoU with the previous box, then nearest centre when nothing overlaps
    assert select_person(frame, "closest_to_previous", np.array([95, 0, 165, 55], np.float32)) == 2
    assert select_person(frame, "closest_to_previous", np.array([300, 300, 310, 310], np.float32)) == 1
    assert select_person(frame, "closest_to_previous", None) == 1  # no history: largest
    assert select_person(NOBODY, "largest", None) is None
    with pytest.raises(ValueError, match="tallest"):
        select_person(frame, "tallest", None)  # type: ignore[arg-type]


def test_closest_to_previous_follows_the_chosen_person() -> None:
    start = _detections(MEDIUM)
    crowded = _detections(LARGE_UNSURE, ([102, 2, 162, 62], 0.5))
    chosen = choose_boxes([start, NOBODY, crowded], (300, 400), rule="closest_to_previous")
    np.testing.assert_array_equal(chosen.boxes[2], [102, 2, 162, 62])
    assert (
        choose_boxes([start, NOBODY, crowded], (300, 400), rule="largest").boxes[2].tolist()
        == LARGE_UNSURE[0]
    )


def test_no_person_rule_uses_previous_then_next_box() -> None:
    a, b = _detections(LARGE_UNSURE), _detections(SMALL_CONFIDENT)
    chosen = choose_boxes([NOBODY, NOBODY, a, NOBODY, b, NOBODY], (300, 400))
    assert chosen.sources.tolist() == [
        BoxSource.NEXT, BoxSource.NEXT, BoxSource.DETECTED, BoxSource.PREVIOUS, BoxSource.DETECTED,
        BoxSource.PREVIOUS,
    ]  # fmt: skip
    expected = [LARGE_UNSURE[0]] * 4 + [SMALL_CONFIDENT[0]] * 2
    np.testing.assert_array_equal(chosen.boxes, np.array(expected, np.float32))
    np.testing.assert_allclose(chosen.scores[[2, 4]], [0.4, 0.9])
    assert np.isnan(chosen.scores[[0, 1, 3, 5]]).all()


def test_no_person_anywhere_uses_the_centre_square() -> None:
    chosen = choose_boxes([NOBODY, NOBODY], (360, 640))
    assert (chosen.sources == BoxSource.CENTRE).all()
    np.testing.assert_array_equal(chosen.boxes, [[140, 0, 500, 360]] * 2)
    np.testing.assert_array_equal(centre_square(640, 360), [0, 140, 360, 500])


def test_crop_takes_the_box_region_and_squashes_it() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 100:] = (0, 0, 255)  # right half blue
    frame[:, :100] = (255, 0, 0)  # left half red
    right = crop_and_resize(frame, np.array([100, 0, 200, 100], np.float32), size=32)
    assert right.shape == (3, 32, 32)
    np.testing.assert_allclose(right[:, 16, 16].numpy(), [0, 0, 1], atol=1e-6)
    # a box reaching outside the frame is clipped, not padded: still only red pixels
    left = crop_and_resize(frame, np.array([-50, -20, 90.5, 300], np.float32), size=16)
    np.testing.assert_allclose(left.mean(dim=(1, 2)).numpy(), [1, 0, 0], atol=1e-6)


def test_normalisations() -> None:
    images = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    minus_one_one = normalise(images, "minus1_1")
    assert minus_one_one[0].eq(-1).all() and minus_one_one[1].eq(1).all()
    imagenet = normalise(images, "imagenet")
    np.testing.assert_allclose(imagenet[0, :, 0, 0].numpy(), [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(images, "zscore")  # type: ignore[arg-type]


class _ScriptedDetector:
    def __init__(self, detections: list[Detections]) -> None:
        self.detections = detections

    def detect(self, frames):
        assert len(frames) == len(self.detections)
        return self.detections


def test_crop_features_for_video_end_to_end() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    detector = _ScriptedDetector([_detections(MEDIUM), NOBODY, _detections(SMALL_CONFIDENT, LARGE_UNSURE)])
    encoder = ImageEncoder.random("mobilenet_v2")
    result = crop_features_for_video(frames, [0, 25, 50], detector, encoder, crop_size=64)  # type: ignore[arg-type]
    assert result.features.shape == (3, 1280)
    assert result.times.tolist() == [0, 25, 50]
    assert result.boxes.sources.tolist() == [BoxSource.DETECTED, BoxSource.PREVIOUS, BoxSource.DETECTED]
    np.testing.assert_array_equal(result.boxes.boxes[2], LARGE_UNSURE[0])
    # frame 1 reuses frame 0's box but its own pixels: different features
    assert not np.allclose(result.features[0], result.features[1], rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="3 frames but 2 frame indices"):
        crop_features_for_video(frames, [0, 25], detector, encoder)  # type: ignore[arg-type]
