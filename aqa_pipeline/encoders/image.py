"""Per-frame image encoders: torchvision ImageNet classifiers with their classification head removed.

* ``resnet50``: global-average-pooled 2048-d, the ACTION-NET static-stream encoder. ACTION-NET replaced ``fc``
  with an identity-weight ``Linear(2048, 2048)`` whose bias kept PyTorch's unseeded random init (about
  U(±0.022)), so its features are avg-pool plus a small random offset. We take avg-pool directly (a bias-free
  identity): the deviation is a constant shift per dimension, which the bias of a linear head absorbs.
* ``mobilenet_v2``: the ``features`` trunk, global-average-pooled to 1280-d; a light option for CPU runs.
  Checkpoints load in torchvision's key layout or in the flat layout of the original PyTorch MobileNetV2 port
  (``features.N.conv.K`` with ReLU6 at their own indices), which is what ``$AQA_WEIGHTS_DIR`` holds.

Input: (N, 3, H, W) float RGB, already normalised (see :mod:`aqa_pipeline.detect.crops` for the two ranges).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aqa_pipeline.encoders.base import Encoded, FrozenEncoder, LoadedWeights, OutputKind
from aqa_pipeline.encoders.weights import resolve_weights, sha256_of


@dataclass(frozen=True)
class ImageEncoderInfo:
    """Metadata kept beside each architecture: its weights entry, its feature size, the head it drops."""

    name: str
    weights: str  # registry entry in aqa_pipeline.encoders.weights
    dim: int
    head: str  # attribute holding the classification head, replaced by nn.Identity
    build: Callable[[], nn.Module]
    # renames checkpoint keys of other published layouts to torchvision's before the strict load
    rename_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


_FLAT_BLOCK = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(.+)")
# Flat ``conv`` Sequential index → torchvision's nested one. Expanding blocks: pw, BN, ReLU6, dw, BN, ReLU6,
# pw-linear, BN; the first block (expansion 1) lacks the leading pw/BN/ReLU6.
_FLAT_TO_NESTED = {
    "expanding": {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"},
    "first": {"0": "0.0", "1": "0.1", "3": "1", "4": "2"},
}


def mobilenet_v2_flat_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a flat-layout MobileNetV2 checkpoint's keys to torchvision's (other layouts pass through)."""
    if "features.1.conv.0.weight" not in state:
        return state
    expanding_blocks = {m.group(1) for k in state if (m := _FLAT_BLOCK.fullmatch(k)) and m.group(2) == "6"}
    renamed = {}
    for key, value in state.items():
        match = _FLAT_BLOCK.fullmatch(key)
        if match:
            block, index, tail = match.groups()
            table = _FLAT_TO_NESTED["expanding" if block in expanding_blocks else "first"]
            key = f"features.{block}.conv.{table[index]}.{tail}"
        renamed[key] = value
    return renamed


def _resnet50() -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None)


def _mobilenet_v2() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None)


IMAGE_ENCODERS: dict[str, ImageEncoderInfo] = {
    info.name: info
    for info in [
        ImageEncoderInfo("resnet50", weights="resnet50_imagenet", dim=2048, head="fc", build=_resnet50),
        ImageEncoderInfo(
            "mobilenet_v2",
            weights="mobilenet_v2_imagenet",
            dim=1280,
            head="classifier",
            build=_mobilenet_v2,
            rename_keys=mobilenet_v2_flat_to_torchvision,
        ),
    ]
}


def _get_info(name: str) -> ImageEncoderInfo:
    if name not in IMAGE_ENCODERS:
        raise KeyError(f"unknown image encoder {name!r}; known: {', '.join(IMAGE_ENCODERS)}")
    return IMAGE_ENCODERS[name]


@torch.no_grad()
def encode_in_batches(model: nn.Module, inputs: torch.Tensor, batch_size: int, dim: int) -> np.ndarray:
    """Run a frozen encoder over ``inputs`` in batches on the model's device: fp16 autocast on CUDA, fp32 on CPU.
    Shared by the image and Video Swin encoders; returns (N, dim) float32 numpy."""
    device = next(model.parameters()).device
    outputs = [torch.zeros(0, dim)]
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            outputs.append(model(batch).float().cpu())
    return torch.cat(outputs).numpy()


class ImageEncoder(nn.Module):
    """A headless torchvision classifier: ``forward`` maps (N, 3, H, W) to pooled (N, dim) features."""

    def __init__(self, info: ImageEncoderInfo, weights_sha256: str | None) -> None:
        super().__init__()
        self.info = info
        self.weights_sha256 = weights_sha256
        self.network = info.build()
        # torchvision's forward pools and flattens before the head, so an identity head leaves the pooled feature.
        setattr(self.network, info.head, nn.Identity())
        self.eval()

    @classmethod
    def random(cls, name: str, seed: int = 0) -> ImageEncoder:
        """Randomly initialised (tests and benchmarks: same compute, meaningless features)."""
        torch.manual_seed(seed)
        return cls(_get_info(name), weights_sha256=None)

    @classmethod
    def pretrained(cls, name: str, weights: str | Path | None = None, device: str = "cpu") -> ImageEncoder:
        """ImageNet weights from an explicit path or the registry; the checkpoint's head tensors are dropped and
        everything else must load strictly (a trunk-only file such as ``features.*`` loads too)."""
        info = _get_info(name)
        path = resolve_weights(info.weights, weights)
        encoder = cls(info, weights_sha256=sha256_of(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        head_prefix = f"{info.head}."
        state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
        if info.rename_keys is not None:
            state = info.rename_keys(state)
        try:
            encoder.network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: not a torchvision {name} checkpoint ({error})") from error
        return encoder.to(device)

    @property
    def dim(self) -> int:
        return self.info.dim

    def provenance(self) -> dict[str, Any]:
        return {
            "encoder": self.info.name,
            "weights": self.info.weights,
            "weights_sha256": self.weights_sha256,
            "dim": self.info.dim,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.info.name}: expected images of shape (N, 3, H, W), got {tuple(images.shape)}"
            )
        return self.network(images)

    def encode(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Encode any number of images in batches: fp16 autocast on CUDA, fp32 on CPU. Returns float32 numpy."""
        return encode_in_batches(self, images, batch_size, self.dim)


class FrameEncoder(FrozenEncoder):
    """Stage-one protocol for a 2-D encoder run on whole frames (one frame per clip, at the preset's frame rate),
    kind ``<name>_frames``. Loaded as a headless trunk (the reference MobileNetV2 file has no classifier), so
    ``--show-pred`` is refused for it."""

    trained_normalisation = "imagenet"
    per_frame = True

    def __init__(self, image_encoder: ImageEncoder, weights: LoadedWeights) -> None:
        name = image_encoder.info.name
        super().__init__(name.replace("_", "-"), f"{name}_frames", image_encoder, weights)
        self.info = image_encoder.info

    @classmethod
    def load(cls, name: str, weights: str | Path | None = None, *, random: bool = False) -> FrameEncoder:
        if random:
            return cls(ImageEncoder.random(name), LoadedWeights.random())
        info = _get_info(name)
        path = resolve_weights(info.weights, weights)
        encoder = ImageEncoder.pretrained(name, path)
        return cls(encoder, LoadedWeights(info.weights, str(path), encoder.weights_sha256))

    def outputs(self, preset) -> list[OutputKind]:
        return [OutputKind(self.primary_kind, self.info.dim, "last convolutional stage", "global average")]

    def _forward(self, x: torch.Tensor, with_logits: bool) -> Encoded:
        if x.shape[2] != 1:
            raise ValueError(f"{self.name}: a 2-D encoder takes one frame per clip, got {x.shape[2]}")
        return Encoded({self.primary_kind: self.network(x[:, :, 0])})
