"""Video Swin: the official backbone (oracle) and ours agree on GDLT's configuration; checkpoints in the official
layout convert on load; pooled shapes; refusals."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aqa_pipeline.encoders.swin import VideoSwinEncoder, load_swin_state
from aqa_pipeline.encoders.weights import sha256_of

torch.set_num_threads(2)

# GDLT's backbone: swin_base_patch244_window877_kinetics600_22k
GDLT_SWIN_B = dict(
    patch_size=(2, 4, 4), embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=(8, 7, 7),
    patch_norm=True,
)  # fmt: skip


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


@pytest.fixture(scope="module")
def oracle(oracles_dir):
    """The official SwinTransformer3D with GDLT's configuration and random weights."""
    sys.path.insert(0, str(oracles_dir / "video_swin_official"))
    try:
        from swin_transformer import SwinTransformer3D
    finally:
        sys.path.pop(0)
    torch.manual_seed(7)
    model = SwinTransformer3D(**GDLT_SWIN_B)
    model.eval()  # its train() override returns None, so no chaining
    return model


@pytest.fixture(scope="module")
def official_file(oracle, tmp_path_factory) -> Path:
    """The oracle's weights saved as the official checkpoint is: {"state_dict": {"backbone.*": ...}}."""
    path = tmp_path_factory.mktemp("swin") / "swin_base_patch244_window877_kinetics600_22k.pth"
    state = {f"backbone.{k}": v for k, v in oracle.state_dict().items()}
    torch.save({"meta": {"note": "random weights in the official layout"}, "state_dict": state}, path)
    return path


def _imagenet_input(clips_uint8: torch.Tensor) -> torch.Tensor:
    """GDLT's input: (B, 3, T, H, W), mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375)."""
    mean = torch.tensor((123.675, 116.28, 103.53)).view(1, 3, 1, 1, 1)
    std = torch.tensor((58.395, 57.12, 57.375)).view(1, 3, 1, 1, 1)
    return (clips_uint8.permute(0, 4, 1, 2, 3).float() - mean) / std


def _oracle_pooled(oracle, clips_uint8: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (
            torch.nn.functional.adaptive_avg_pool3d(oracle(_imagenet_input(clips_uint8)), 1)
            .flatten(1)
            .numpy()
        )


@pytest.mark.parametrize(
    "shape",
    [
        (2, 8, 64, 64, 3),  # smaller than a window: both pad and shrink windows
        (1, 10, 96, 128, 3),  # T, H, W not multiples of the patch or window: padding paths
    ],  # GDLT's own 32 x 224 x 224 clip agrees too (checked by hand: 2 models x 280 GMACs is too slow for CI)
)
def test_converted_official_checkpoint_matches_the_official_backbone(oracle, official_file, shape):
    encoder = VideoSwinEncoder.load("swin3d_b", weights=official_file)  # converted on load, strict
    assert encoder.weights.sha256 == sha256_of(official_file) and encoder.weights.converter
    clips = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours = encoder(clips).features["vst"].numpy()
    expected = _oracle_pooled(oracle, clips)
    assert ours.shape == (shape[0], 1024)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5)
    # not vacuous: another random model gives other features
    assert (
        np.abs(VideoSwinEncoder.load("swin3d_b", random=True)(clips).features["vst"].numpy() - expected).max()
        > 1e-2
    )


def test_official_layout_with_a_classifier_keeps_it_for_predictions(tmp_path, official_file):
    checkpoint = torch.load(official_file, weights_only=True)
    checkpoint["state_dict"]["cls_head.fc_cls.weight"] = torch.randn(600, 1024)
    checkpoint["state_dict"]["cls_head.fc_cls.bias"] = torch.randn(600)
    torch.save(checkpoint, tmp_path / "with_head.pth")
    encoder = VideoSwinEncoder.load("swin3d_b", weights=tmp_path / "with_head.pth")
    assert encoder.classifier is not None and encoder.classifier.out_features == 600
    encoder.class_names = [f"class {i}" for i in range(600)]  # the labels file is a download; stand in for it
    out = encoder(torch.zeros(1, 4, 32, 32, 3, dtype=torch.uint8), with_logits=True)
    assert out.logits.shape == (1, 600)


@pytest.mark.parametrize(("arch", "kind", "dim"), [("swin3d_t", "vst_t", 768), ("swin3d_b", "vst", 1024)])
def test_random_encoder_gives_one_pooled_vector_per_clip(arch, kind, dim):
    encoder = VideoSwinEncoder.load(arch, random=True)
    assert encoder.weights.is_random and encoder.primary_kind == kind
    features = encoder(torch.zeros(3, 4, 32, 32, 3, dtype=torch.uint8)).features[kind]
    assert features.shape == (3, dim) and torch.isfinite(features).all()


def test_torchvision_layout_loads_without_conversion(tmp_path):
    from torchvision.models.video import swin3d_t

    torch.manual_seed(3)
    reference = swin3d_t(num_classes=400).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    state, converter = load_swin_state(tmp_path / "tv.pth")
    assert converter is None
    encoder = VideoSwinEncoder.load("swin3d_t", weights=tmp_path / "tv.pth")
    clips = torch.randint(0, 256, (1, 8, 64, 64, 3), dtype=torch.uint8)
    reference.head = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(_imagenet_input(clips)).numpy()
    np.testing.assert_allclose(encoder(clips).features["vst_t"].numpy(), expected, atol=2e-5)


def test_converter_rejects_unknown_keys_other_windows_and_architectures(tmp_path, official_file):
    checkpoint = torch.load(official_file, weights_only=True)
    checkpoint["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match="extra.weight"):
        load_swin_state(tmp_path / "extra.pth")

    checkpoint = torch.load(official_file, weights_only=True)
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    checkpoint["state_dict"][key] = torch.flip(checkpoint["state_dict"].get(key, torch.arange(10)), (0,))
    torch.save(checkpoint, tmp_path / "window.pth")
    with pytest.raises(ValueError, match="window size"):
        load_swin_state(tmp_path / "window.pth")

    with pytest.raises(ValueError, match="not swin3d_t"):
        VideoSwinEncoder.load("swin3d_t", weights=official_file, weights_name="swin3d_t_kinetics400")


def test_pretrained_refuses_weights_of_another_architecture():
    with pytest.raises(ValueError, match="do not fit swin3d_t"):
        VideoSwinEncoder.load("swin3d_t", weights_name="vst_b_kinetics600_22k")
