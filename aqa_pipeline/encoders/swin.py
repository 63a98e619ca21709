"""Video Swin Transformer clip encoder (torchvision ``swin3d_b`` / ``swin3d_t``) and the official-checkpoint converter.

GDLT (CVPR'22) encoded Rhythmic Gymnastics and Fis-V with the official Video-Swin-Transformer
``swin_base_patch244_window877_kinetics600_22k``: the backbone's last stage (1024 x T/2 x 7 x 7 for a 32 x 224²
clip) after the final LayerNorm, ``adaptive_avg_pool3d`` to one 1024-d vector per clip. torchvision's
``SwinTransformer3d`` is the same architecture; its forward up to (and including) the average pool gives exactly
that vector, so the encoder is torchvision's model with the classification head removed.

Input expected by :class:`VideoSwinEncoder`: float clips (B, 3, T, H, W), RGB, ImageNet mean/std normalised.
The ``gdlt`` preset (``aqa_pipeline.video.presets``) produces them: 32-frame non-overlapping clips at native fps,
short side resized to 256, centre crop 224 x 300 (H x W), resized to 224 x 224. Other sizes run too (torchvision
pads T/H/W to the patch size and shrinks windows that exceed the input), which is what lets tests use tiny clips.

Weights: ``vst_b_kinetics600_22k`` (GDLT's backbone, converted by :func:`convert_official_checkpoint`) is the
faithful choice for ``swin3d_b``; ``swin3d_b_kinetics400_22k`` and ``swin3d_t_kinetics400`` are torchvision's
own (Kinetics-400) checkpoints.
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

from aqa_pipeline.encoders.image import encode_in_batches
from aqa_pipeline.encoders.weights import resolve_weights, sha256_of


@dataclass(frozen=True)
class VideoSwinInfo:
    """Metadata kept beside each architecture: torchvision builder, feature size, default and allowed weights."""

    arch: str
    dim: int
    weights: tuple[str, ...]  # registry entries; the first is the default

    def build(self) -> nn.Module:
        return _build_torchvision(self.arch)


def _build_torchvision(arch: str, **kwargs: Any) -> nn.Module:
    from torchvision.models import video

    builder: Callable[..., nn.Module] = getattr(video, arch)
    return builder(weights=None, **kwargs)


VIDEO_SWIN: dict[str, VideoSwinInfo] = {
    info.arch: info
    for info in [
        VideoSwinInfo("swin3d_b", dim=1024, weights=("vst_b_kinetics600_22k", "swin3d_b_kinetics400_22k")),
        VideoSwinInfo("swin3d_t", dim=768, weights=("swin3d_t_kinetics400",)),
    ]
}

# (embed dim, depths) of an official checkpoint → the torchvision architecture with that shape.
_OFFICIAL_SHAPES = {
    (96, (2, 2, 6, 2)): "swin3d_t",
    (96, (2, 2, 18, 2)): "swin3d_s",
    (128, (2, 2, 18, 2)): "swin3d_b",
}


def _get_info(arch: str) -> VideoSwinInfo:
    if arch not in VIDEO_SWIN:
        raise KeyError(f"unknown Video Swin architecture {arch!r}; known: {', '.join(VIDEO_SWIN)}")
    return VIDEO_SWIN[arch]


class VideoSwinEncoder(nn.Module):
    """torchvision Video Swin without its head: (B, 3, T, H, W) clips → (B, dim) pooled features."""

    def __init__(self, arch: str, weights_name: str | None = None, weights_sha256: str | None = None) -> None:
        super().__init__()
        self.info = _get_info(arch)
        self.weights_name = weights_name
        self.weights_sha256 = weights_sha256
        self.network = self.info.build()
        self.network.head = nn.Identity()
        self.eval()

    @classmethod
    def random(cls, arch: str, seed: int = 0) -> VideoSwinEncoder:
        """Randomly initialised (tests and benchmarks: same compute, meaningless features)."""
        torch.manual_seed(seed)
        return cls(arch)

    @classmethod
    def pretrained(
        cls,
        arch: str = "swin3d_b",
        weights_name: str | None = None,
        weights: str | Path | None = None,
        device: str = "cpu",
    ) -> VideoSwinEncoder:
        """Load registry entry ``weights_name`` (default: the architecture's first) or an explicit file in
        torchvision's key layout; head tensors are dropped, everything else must load strictly."""
        info = _get_info(arch)
        weights_name = weights_name or info.weights[0]
        if weights_name not in info.weights:
            raise ValueError(
                f"weights {weights_name!r} do not fit {arch}; choose one of {', '.join(info.weights)}"
            )
        path = resolve_weights(weights_name, weights)
        encoder = cls(arch, weights_name=weights_name, weights_sha256=sha256_of(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        try:
            encoder.network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: not a torchvision {arch} state_dict ({error})") from error
        return encoder.to(device)

    @property
    def dim(self) -> int:
        return self.info.dim

    def provenance(self) -> dict[str, Any]:
        return {
            "encoder": self.info.arch,
            "weights": self.weights_name,
            "weights_sha256": self.weights_sha256,
            "dim": self.info.dim,
        }

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(
                f"{self.info.arch}: expected clips of shape (B, 3, T, H, W), got {tuple(clips.shape)}"
            )
        return self.network(clips)

    def encode(self, clips: torch.Tensor, batch_size: int = 4) -> np.ndarray:
        """Encode clips in batches (GDLT ran 4 per pass): fp16 autocast on CUDA, fp32 on CPU; float32 numpy."""
        return encode_in_batches(self, clips, batch_size, self.dim)


_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.(.+)")
_MLP = {"mlp.fc1.": "mlp.0.", "mlp.fc2.": "mlp.3."}


def official_to_torchvision_key(key: str) -> str:
    """Map one key of the official (mmaction-style) Video Swin checkpoint to torchvision's ``SwinTransformer3d``.

    Stage ``i``'s blocks are torchvision ``features.{2i}``, its patch merging (``downsample``, at the end of the
    official stage) is ``features.{2i+1}``; the MLP's ``fc1``/``fc2`` are ``mlp.0``/``mlp.3``; the I3D head's
    ``cls_head.fc_cls`` is ``head``.
    """
    stripped = key.removeprefix("module.")
    if stripped.startswith("cls_head.fc_cls."):
        return "head." + stripped.removeprefix("cls_head.fc_cls.")
    if not stripped.startswith("backbone."):
        raise KeyError(
            f"unexpected key {key!r} in an official Video Swin checkpoint (expected backbone.* or cls_head.*)"
        )
    rest = stripped.removeprefix("backbone.")
    if rest.startswith(("patch_embed.", "norm.")):
        return rest
    if match := _BLOCK.fullmatch(rest):
        stage, block, tail = match.groups()
        for official, torchvision in _MLP.items():
            if tail.startswith(official):
                tail = torchvision + tail.removeprefix(official)
        return f"features.{2 * int(stage)}.{block}.{tail}"
    if match := _DOWNSAMPLE.fullmatch(rest):
        stage, tail = match.groups()
        return f"features.{2 * int(stage) + 1}.{tail}"
    raise KeyError(f"unexpected key {key!r} in an official Video Swin checkpoint")


def _official_architecture(state: dict[str, torch.Tensor], source: Path) -> str:
    embed_dim = state["patch_embed.proj.weight"].shape[0]
    depths = []
    for stage in range(0, 7, 2):
        blocks = {int(k.split(".")[2]) for k in state if k.startswith(f"features.{stage}.")}
        depths.append(len(blocks))
    arch = _OFFICIAL_SHAPES.get((embed_dim, tuple(depths)))
    if arch is None:
        raise ValueError(
            f"{source}: Video Swin with embed dim {embed_dim} and depths {depths} has no torchvision twin"
        )
    return arch


def convert_official_checkpoint(source: Path, destination: Path) -> None:
    """Registry converter: official Video-Swin-Transformer checkpoint → torchvision ``swin3d_*`` state_dict.

    The result is checked by loading it strictly into the matching torchvision architecture (inferred from the
    embedding width and stage depths) before it is written. ``relative_position_index`` buffers are deterministic
    functions of the window size: taken from the model, and if the checkpoint carries them they must agree.
    """
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    official = checkpoint.get("state_dict", checkpoint)
    state = {official_to_torchvision_key(k): v for k, v in official.items()}
    if "patch_embed.proj.weight" not in state:
        raise ValueError(f"{source}: no backbone.patch_embed.proj.weight: not a Video Swin checkpoint")
    arch = _official_architecture(state, source)
    head = state.get("head.weight")
    model = _build_torchvision(arch, **({"num_classes": head.shape[0]} if head is not None else {}))
    if head is None:
        model.head = nn.Identity()
    for key, index in model.state_dict().items():
        if key.endswith("relative_position_index"):
            if key in state and not torch.equal(state[key].to(index.dtype), index):
                raise ValueError(f"{source}: {key} differs from torchvision's: a different window size")
            state[key] = index
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: does not convert to torchvision {arch} ({error})") from error
    torch.save(model.state_dict(), destination)
