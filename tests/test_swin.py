"""Video Swin: pooled feature shapes of random models, and the official-checkpoint converter's round trip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from aqa_pipeline.encoders.swin import VideoSwinEncoder, convert_official_checkpoint

torch.set_num_threads(1)

TINY_CLIPS = (1, 3, 8, 64, 64)  # smallest comfortable input: T/2 = 4 tokens, 64/32 = 2 x 2 at the last stage


def _torchvision_to_official(key: str) -> str:
    """The inverse of the converter, written independently: torchvision features.{2i}.{j} are official
    layers.{i}.blocks.{j}, features.{2i+1} is layers.{i}.downsample, mlp.0/mlp.3 are mlp.fc1/mlp.fc2."""
    if key.startswith("head."):
        return "cls_head.fc_cls." + key.removeprefix("head.")
    if match := re.fullmatch(r"features\.(\d+)\.(.+)", key):
        index, tail = int(match.group(1)), match.group(2)
        if index % 2 == 1:
            return f"backbone.layers.{index // 2}.downsample.{tail}"
        block, rest = tail.split(".", 1)
        rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
        return f"backbone.layers.{index // 2}.blocks.{block}.{rest}"
    return "backbone." + key


def _official_checkpoint(
    tmp_path: Path, seed: int = 3, with_head: bool = True
) -> tuple[Path, torch.nn.Module]:
    from torchvision.models.video import swin3d_t

    torch.manual_seed(seed)
    model = swin3d_t(num_classes=600).eval()
    state = {_torchvision_to_official(k): v for k, v in model.state_dict().items()}
    if not with_head:
        state = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    assert (
        any(".blocks.0.mlp.fc1.weight" in k for k in state)
        and "backbone.layers.2.downsample.reduction.weight" in state
    )
    source = tmp_path / "official.pth"
    torch.save({"meta": {"note": "synthetic"}, "state_dict": state}, source)
    model.head = torch.nn.Identity()
    return source, model


@pytest.mark.parametrize(("arch", "dim"), [("swin3d_t", 768), ("swin3d_b", 1024)])
def test_random_encoder_gives_one_pooled_vector_per_clip(arch: str, dim: int) -> None:
    encoder = VideoSwinEncoder.random(arch)
    features = encoder.encode(torch.randn(3, 3, 4, 32, 32), batch_size=2)
    assert features.shape == (3, dim) and features.dtype == np.float32
    assert np.isfinite(features).all()


def test_bad_clip_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\).*\(3, 8, 64, 64\)"):
        VideoSwinEncoder.random("swin3d_t").encode(torch.zeros(3, 8, 64, 64))


@pytest.mark.parametrize("with_head", [True, False])
def test_official_checkpoint_round_trip_is_exact(tmp_path: Path, with_head: bool) -> None:
    source, reference = _official_checkpoint(tmp_path, with_head=with_head)
    destination = tmp_path / "converted.pth"
    convert_official_checkpoint(source, destination)
    encoder = VideoSwinEncoder.pretrained("swin3d_t", weights=destination)  # strict load inside
    clips = torch.randn(*TINY_CLIPS)
    with torch.no_grad():
        expected = reference(clips).numpy()
    np.testing.assert_array_equal(encoder.encode(clips), expected)
    # and the result differs from another random model's, so equality above is not vacuous
    assert not np.allclose(VideoSwinEncoder.random("swin3d_t", seed=99).encode(clips), expected)


def test_converter_rejects_unknown_keys_and_other_windows(tmp_path: Path) -> None:
    source, _ = _official_checkpoint(tmp_path)
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["state_dict"]["neck.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match="neck.extra.weight"):
        convert_official_checkpoint(tmp_path / "extra.pth", tmp_path / "out.pth")

    checkpoint = torch.load(source, weights_only=True)
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key].flip(0)
    torch.save(checkpoint, tmp_path / "window.pth")
    with pytest.raises(ValueError, match="window size"):
        convert_official_checkpoint(tmp_path / "window.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_pretrained_refuses_weights_of_another_architecture() -> None:
    with pytest.raises(ValueError, match="do not fit swin3d_t"):
        VideoSwinEncoder.pretrained("swin3d_t", weights_name="vst_b_kinetics600_22k")
