"""Inception-I3D: architecture shapes, TF-"SAME" padding, strict loading and Kinetics predictions on real clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aqa_pipeline.encoders.i3d import (
    KINETICS400,
    InceptionI3d,
    _tf_same_pad,
    endpoint_shape,
    load_i3d,
    load_labels,
)
from aqa_pipeline.video.decode import probe, read_frames
from aqa_pipeline.video.presets import get_preset

torch.set_num_threads(1)


def test_tf_same_padding_puts_the_extra_pixel_after():
    x = torch.ones(1, 1, 4, 7, 8)
    padded = _tf_same_pad(x, (3, 3, 3), (2, 2, 2))
    # T=4, k3 s2: total 1 → (0, 1); H=7 (odd), k3 s2: total 2 → (1, 1); W=8: total 1 → (0, 1)
    assert padded.shape == (1, 1, 5, 9, 9)
    assert padded[0, 0, -1].sum() == 0 and padded[0, 0, 0].sum() > 0


@pytest.mark.parametrize("endpoint", ["Mixed_4e", "MaxPool3d_4a_3x3", "Mixed_5c"])
def test_map_endpoint_shapes_match_the_forward_pass(endpoint):
    torch.manual_seed(0)
    model = InceptionI3d(map_endpoint=endpoint).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 8, 64, 64), with_logits=True)
    assert out.features.shape == (2, 1024) and out.logits.shape == (2, 400)
    assert tuple(out.maps.shape[1:]) == endpoint_shape(endpoint, 8, 64, 64)
    assert endpoint_shape("Mixed_4e", 16, 224, 224) == (528, 4, 14, 14)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown I3D endpoint"):
        InceptionI3d(map_endpoint="Mixed_9z")
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        InceptionI3d()(torch.zeros(1, 8, 3, 32, 32))


def test_strict_loading_of_the_kinetics_checkpoint(weights_dir):
    model, path = load_i3d(weights_dir / "i3d_rgb_kinetics400.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)  # load_state_dict(strict=True) passed; nothing left over
    assert len(load_labels(path)) == 400 and KINETICS400.sha256.startswith("b24b8059")


def test_a_foreign_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "i3d_rgb_kinetics400.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bogus)
    with pytest.raises(ValueError, match="sha256"):
        load_i3d(bogus)  # the registry hash check runs first, naming the file


@pytest.fixture(scope="module")
def kinetics_i3d(weights_dir):
    model, path = load_i3d(weights_dir / "i3d_rgb_kinetics400.pt")
    return model, load_labels(path)


def _top1(model, labels, video, num_frames: int = 32) -> tuple[str, float]:
    """Two 16-frame clips from the middle of the video, short side 256 → centre 224, [-1, 1] (Kinetics' input)."""
    preset = dataclasses.replace(get_preset("mtl-aqa"), resize_mode="short_side", resize_to=256)
    middle = np.arange(num_frames) + (probe(video).num_frames - num_frames) // 2
    frames = np.stack([preset.transform_frame(f) for f in read_frames(video, middle)])
    x = torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2).reshape(3, -1, 16, 224, 224)
    with torch.inference_mode():
        logits = model(x.permute(1, 0, 2, 3, 4), with_logits=True).logits.mean(0)
    p, index = logits.softmax(-1).max(0)
    return labels[int(index)], float(p)


def test_kinetics_top1_clean_and_jerk(kinetics_i3d, data_dir):
    label, p = _top1(*kinetics_i3d, data_dir / "videos" / "weightlifting_clean_and_jerk.mp4")
    assert label == "clean and jerk" and p > 0.5, (label, p)


def test_kinetics_top1_walking_the_dog(kinetics_i3d, data_dir):
    label, p = _top1(*kinetics_i3d, data_dir / "videos" / "walking_the_dog.mp4")
    assert label == "walking the dog" and p > 0.3, (label, p)
