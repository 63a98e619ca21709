"""Inception-I3D (Carreira & Zisserman, CVPR 2017), the frozen clip encoder of the AQA literature.

Module and parameter names follow the widely shared piergiaj PyTorch port (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_4e.b1b.bn.running_var``, ``logits.conv3d.bias``), so DeepMind's converted Kinetics-400 checkpoint loads
with ``strict=True``. That checkpoint was trained with TensorFlow "SAME" padding, which is input-size dependent
and asymmetric (the extra pixel goes after), so every convolution and pooling pads itself at run time rather
than with a fixed ``padding=``.

Where "SAME" is symmetric (stride 1, odd kernel: all 3×3×3 convolutions and the branch max-pools) the layers
pad natively instead, which is the same arithmetic without a padded copy per call.

The clip feature is Mixed_5c averaged over time and space: for a 16×224² clip this is exactly the papers'
``AvgPool3d((2, 7, 7))`` (Mixed_5c is 2×7×7 there), and it stays one 1024-d vector per clip for 8- or 32-frame
clips and for 112² inputs, where the fixed pool would slide or fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aqa_pipeline.encoders.base import Encoded, FrozenEncoder, LoadedWeights, OutputKind
from aqa_pipeline.encoders.weights import get_spec, load_label_file, resolve_weights, sha256_of
from aqa_pipeline.video.presets import Preset

# Endpoints in forward order; any of them can be returned as the mid-level map.
ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)

FEATURE_DIM = 1024


def _symmetric_padding(
    kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> tuple[int, int, int] | None:
    """With stride 1 and odd kernels "SAME" is symmetric, so the layer can pad natively (no copy per call)."""
    if all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel):
        return tuple(k // 2 for k in kernel)
    return None


def _tf_same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad (T, H, W) like TensorFlow's "SAME": total ``k - s`` (or ``k - size % s``), the extra one after."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no fixed padding) → optional BatchNorm (TF's eps 1e-3) → optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.native_padding = _symmetric_padding(kernel, stride)
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, kernel, stride, self.native_padding or 0, bias=bias
        )
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(x if self.native_padding else _tf_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TF "SAME" padding; zero padding equals -inf padding here because inputs follow a ReLU."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.native_padding = _symmetric_padding(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native_padding:
            return F.max_pool3d(x, self.kernel, self.stride, self.native_padding)
        return F.max_pool3d(_tf_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1×1; 1×1→3×3; 1×1→3×3; 3×3 max-pool→1×1) concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1_reduce, b1, b2_reduce, b2, b3 = widths
        self.b0 = Unit3D(in_channels, b0)
        self.b1a = Unit3D(in_channels, b1_reduce)
        self.b1b = Unit3D(b1_reduce, b1, (3, 3, 3))
        self.b2a = Unit3D(in_channels, b2_reduce)
        self.b2b = Unit3D(b2_reduce, b2, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, b3)
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


@dataclass
class I3DOutput:
    """What one forward pass returns; ``maps``/``logits`` are None unless asked for."""

    features: torch.Tensor  # (B, 1024): Mixed_5c averaged over T, H, W
    maps: torch.Tensor | None = None  # (B, C, T', H', W') at ``map_endpoint``
    logits: torch.Tensor | None = None  # (B, num_classes), from the averaged Mixed_5c


class InceptionI3d(nn.Module):
    """Inception-I3D trunk plus the Kinetics classifier (``logits``), returning features, maps and logits.

    Input: float (B, 3, T, H, W), RGB, normalised as the weights expect ([-1, 1] for the Kinetics checkpoint).
    ``map_endpoint`` (e.g. ``"Mixed_4e"``: 528 ch, T/4, H/16, W/16; TSA-Net's default ``"MaxPool3d_4a_3x3"``:
    480 ch) selects the mid-level map to return.
    """

    def __init__(self, num_classes: int = 400, map_endpoint: str | None = None) -> None:
        super().__init__()
        if map_endpoint is not None and map_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown I3D endpoint {map_endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
        self.map_endpoint = map_endpoint
        layers: dict[str, nn.Module] = {
            "Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            "MaxPool3d_2a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
            "MaxPool3d_3a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "Mixed_3b": InceptionBlock(192, (64, 96, 128, 16, 32, 32)),
            "Mixed_3c": InceptionBlock(256, (128, 128, 192, 32, 96, 64)),
            "MaxPool3d_4a_3x3": MaxPool3dSame((3, 3, 3), (2, 2, 2)),
            "Mixed_4b": InceptionBlock(480, (192, 96, 208, 16, 48, 64)),
            "Mixed_4c": InceptionBlock(512, (160, 112, 224, 24, 64, 64)),
            "Mixed_4d": InceptionBlock(512, (128, 128, 256, 24, 64, 64)),
            "Mixed_4e": InceptionBlock(512, (112, 144, 288, 32, 64, 64)),
            "Mixed_4f": InceptionBlock(528, (256, 160, 320, 32, 128, 128)),
            "MaxPool3d_5a_2x2": MaxPool3dSame((2, 2, 2), (2, 2, 2)),
            "Mixed_5b": InceptionBlock(832, (256, 160, 320, 32, 128, 128)),
            "Mixed_5c": InceptionBlock(832, (384, 192, 384, 48, 128, 128)),
        }
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor, *, with_logits: bool = False) -> I3DOutput:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (B, 3, T, H, W) RGB clips, got shape {tuple(x.shape)}")
        maps = None
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
            if name == self.map_endpoint:
                maps = x
        pooled = x.mean(dim=(2, 3, 4), keepdim=True)
        logits = self.logits(pooled).flatten(1) if with_logits else None
        return I3DOutput(features=pooled.flatten(1), maps=maps, logits=logits)


@dataclass(frozen=True)
class I3DWeights:
    """Weights metadata kept beside the architecture (torchvision style): what the checkpoint expects."""

    registry_name: str
    input_range: str
    labels_file: str
    meta: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return get_spec(self.registry_name).sha256


KINETICS400 = I3DWeights(
    registry_name="i3d_kinetics400",
    input_range="[-1, 1] (x / 127.5 - 1)",
    labels_file="kinetics400_labels.txt",
    meta={
        "num_classes": 400,
        "dataset": "Kinetics-400",
        "paper": "Carreira & Zisserman, Quo Vadis, Action Recognition? (CVPR 2017)",
        "min_frames": 8,
        "feature_dim": FEATURE_DIM,
    },
)


def load_i3d(
    weights: str | Path | None = None,
    *,
    map_endpoint: str | None = None,
    spec: I3DWeights = KINETICS400,
) -> tuple[InceptionI3d, Path]:
    """The pretrained I3D in eval mode on CPU and the checkpoint path it came from (for labels and provenance).

    ``weights`` is an explicit checkpoint; otherwise the registry resolves it ($AQA_WEIGHTS_DIR, cache, download).
    """
    path = resolve_weights(spec.registry_name, weights)
    model = InceptionI3d(num_classes=spec.meta["num_classes"], map_endpoint=map_endpoint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: not a piergiaj-layout InceptionI3d checkpoint ({error})") from error
    return model.eval(), path


def load_labels(weights_path: str | Path, spec: I3DWeights = KINETICS400) -> list[str]:
    """Class names in logit order: the labels file next to the checkpoint, else through the weights registry."""
    labels_path = Path(weights_path).parent / spec.labels_file
    if not labels_path.is_file():
        labels_path = resolve_weights("kinetics400_labels")
    labels = load_label_file(labels_path)
    if len(labels) != spec.meta["num_classes"]:
        raise ValueError(f"{labels_path}: expected {spec.meta['num_classes']} labels, found {len(labels)}")
    return labels


# Stride of each downsampling stage in (T, H, W); everything else keeps the size ("SAME" padding, stride 1).
_STRIDES = {
    "Conv3d_1a_7x7": (2, 2, 2),
    "MaxPool3d_2a_3x3": (1, 2, 2),
    "MaxPool3d_3a_3x3": (1, 2, 2),
    "MaxPool3d_4a_3x3": (2, 2, 2),
    "MaxPool3d_5a_2x2": (2, 2, 2),
}
_CHANNELS = {
    "Conv3d_1a_7x7": 64,
    "MaxPool3d_2a_3x3": 64,
    "Conv3d_2b_1x1": 64,
    "Conv3d_2c_3x3": 192,
    "MaxPool3d_3a_3x3": 192,
    "Mixed_3b": 256,
    "Mixed_3c": 480,
    "MaxPool3d_4a_3x3": 480,
    "Mixed_4b": 512,
    "Mixed_4c": 512,
    "Mixed_4d": 512,
    "Mixed_4e": 528,
    "Mixed_4f": 832,
    "MaxPool3d_5a_2x2": 832,
    "Mixed_5b": 832,
    "Mixed_5c": 1024,
}


def endpoint_shape(endpoint: str, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(C, T, H, W) of ``endpoint`` for one clip, computed without running the network.

    E.g. Mixed_4e of a 16×224² clip is 528×4×14×14.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown I3D endpoint {endpoint!r}")
    size = [frames, height, width]
    for name in ENDPOINTS[: ENDPOINTS.index(endpoint) + 1]:
        stride = _STRIDES.get(name, (1, 1, 1))
        size = [-(-s // st) for s, st in zip(size, stride, strict=True)]
    return (_CHANNELS[endpoint], *size)


class I3DEncoder(FrozenEncoder):
    """Stage-one protocol around :class:`InceptionI3d`: kind ``i3d`` (Mixed_5c pooled), ``i3d_maps`` with a map
    endpoint, Kinetics-400 logits for ``--show-pred``."""

    trained_normalisation = "minus1_1"
    channels_last = True

    def __init__(self, model: InceptionI3d, weights: LoadedWeights) -> None:
        super().__init__("i3d", "i3d", model, weights)

    @classmethod
    def load(
        cls, weights: str | Path | None = None, *, random: bool = False, map_endpoint: str | None = None
    ) -> I3DEncoder:
        if random:
            return cls(InceptionI3d(map_endpoint=map_endpoint), LoadedWeights.random())
        model, path = load_i3d(weights, map_endpoint=map_endpoint)
        return cls(model, LoadedWeights(KINETICS400.registry_name, str(path), sha256_of(path)))

    def load_class_names(self) -> list[str] | None:
        return None if self.weights.is_random else load_labels(self.weights.path)

    def outputs(self, preset: Preset) -> list[OutputKind]:
        kinds = [OutputKind("i3d", FEATURE_DIM, "Mixed_5c", "mean over T, H, W")]
        endpoint = self.network.map_endpoint
        if endpoint is not None:
            extra: dict = {
                "layout": "(clips, C, T, H, W): one I3D map per clip, clip k's T axis covers its clip_len frames"
            }
            if preset.resize_mode == "fixed" and preset.output_hw == preset.crop_hw:
                # the spatial recipe as (w, h), for the TSA head's crop-aware tube geometry
                extra |= {"resize": list(preset.resize_to), "crop": [preset.crop_hw[1], preset.crop_hw[0]]}
            shape = endpoint_shape(endpoint, preset.clip_len, *preset.output_hw)
            kinds.append(OutputKind("i3d_maps", shape, endpoint, "none", dtype="float16", extra=extra))
        return kinds

    def _forward(self, x: torch.Tensor, with_logits: bool) -> Encoded:
        output = self.network(x, with_logits=with_logits)
        features = {"i3d": output.features}
        if output.maps is not None:
            features["i3d_maps"] = output.maps
        return Encoded(features, output.logits)
