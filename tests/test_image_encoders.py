"""Image encoders: shapes from random models, the real MobileNetV2 weights (strict load, ImageNet-feature sanity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.detect.crops import crop_and_resize, normalise
from aqa_pipeline.encoders.image import ImageEncoder, mobilenet_v2_flat_to_torchvision

torch.set_num_threads(1)

VIDEOS = ("mtl_aqa_dive_sample", "walking_the_dog", "weightlifting_clean_and_jerk")


@pytest.mark.parametrize(("name", "dim"), [("resnet50", 2048), ("mobilenet_v2", 1280)])
def test_random_encoder_shapes_and_batching(name: str, dim: int) -> None:
    encoder = ImageEncoder.random(name)
    images = torch.randn(3, 3, 64, 64)
    features = encoder.encode(images, batch_size=2)
    assert features.shape == (3, dim) and features.dtype == np.float32
    # batching must not change the result (eval-mode BatchNorm)
    np.testing.assert_allclose(features, encoder.encode(images, batch_size=3), rtol=1e-3, atol=1e-4)


def test_bad_input_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(2, 64, 64\)"):
        ImageEncoder.random("mobilenet_v2").encode(torch.zeros(2, 64, 64))


def test_flat_layout_remap_matches_torchvision_keys() -> None:
    """A torchvision state_dict re-flattened by hand must map back to exactly the same keys."""
    reference = ImageEncoder.random("mobilenet_v2").network.state_dict()
    inverse = {
        "expanding": {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"},
        "first": {"0.0": "0", "0.1": "1", "1": "3", "2": "4"},
    }
    flat = {}
    for key, value in reference.items():
        parts = key.split(".")
        if parts[2:3] == ["conv"]:
            table = inverse["first" if parts[1] == "1" else "expanding"]
            nested = ".".join(parts[3:5]) if ".".join(parts[3:5]) in table else parts[3]
            tail = parts[3 + nested.count(".") + 1 :]
            key = ".".join([*parts[:3], table[nested], *tail])
        flat[key] = value
    assert "features.1.conv.0.weight" in flat
    assert mobilenet_v2_flat_to_torchvision(flat).keys() == reference.keys()


def _frames(data_dir, video: str, count: int = 4, gray: bool = False) -> torch.Tensor:
    import decord

    reader = decord.VideoReader(str(data_dir / "videos" / f"{video}.mp4"))
    indices = np.linspace(0, len(reader) - 1, count).astype(int).tolist()
    crops = []
    for frame in reader.get_batch(indices).asnumpy():
        if gray:
            frame = np.repeat(frame.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
        height, width = frame.shape[:2]
        crops.append(crop_and_resize(frame, np.array([0, 0, width, height], dtype=np.float32)))
    return normalise(torch.stack(crops), "imagenet")


def test_real_mobilenet_v2_recognises_videos_across_colour_removal(weights_dir, data_dir) -> None:
    """Real ImageNet features know what is in a frame: a grayscale frame's nearest colour frame (another time of
    the same video excluded itself) comes from the same video, with a clear similarity margin. Random weights
    give near-constant features (all cosines ~0.98) and fail the margin."""
    encoder = ImageEncoder.pretrained("mobilenet_v2", weights_dir / "mobilenet_v2_imagenet_features.pt")
    assert encoder.weights_sha256 is not None
    colour = np.concatenate([encoder.encode(_frames(data_dir, v)) for v in VIDEOS])
    gray = np.concatenate([encoder.encode(_frames(data_dir, v, gray=True)) for v in VIDEOS])
    labels = np.repeat(np.arange(len(VIDEOS)), 4)
    colour /= np.linalg.norm(colour, axis=1, keepdims=True)
    gray /= np.linalg.norm(gray, axis=1, keepdims=True)
    similarity = gray @ colour.T
    np.fill_diagonal(similarity, -np.inf)  # a frame may not retrieve its own colour version
    assert (labels[similarity.argmax(axis=1)] == labels).all()
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None]
    assert similarity[same].mean() - similarity[different].mean() > 0.1
