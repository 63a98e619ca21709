"""Video Swin Transformer clip encoder (torchvision ``swin3d_b`` / ``swin3d_t``), kinds ``vst`` / ``vst_t``.

GDLT (CVPR'22) encoded Rhythmic Gymnastics and Fis-V with the official Video-Swin-Transformer
``swin_base_patch244_window877_kinetics600_22k``: the backbone's last stage (1024 x T/2 x 7 x 7 for a 32 x 224²
clip) after the final LayerNorm, ``adaptive_avg_pool3d`` to one 1024-d vector per clip. torchvision's
``SwinTransformer3d`` is the same architecture; its forward up to (and including) the average pool gives exactly
that vector, so the encoder is torchvision's model with the classification head split off (kept for
``--show-pred`` when the checkpoint has one).

Input: ImageNet mean/std normalised clips. The ``gdlt`` preset (``aqa_pipeline.video.presets``) produces them: 32-frame non-overlapping clips at native fps,
short side resized to 256, centre crop 224 x 300 (H x W), resized to 224 x 224. Other sizes run too (torchvision
pads T/H/W to the patch size and shrinks windows that exceed the input), which is what lets tests use tiny clips.

Weights: ``vst_b_kinetics600_22k``, the official ``swin_base_patch244_window877_kinetics600_22k.pth`` (GDLT's
backbone), is the faithful choice for ``swin3d_b``: it is found under that file name and its keys are converted on
load (:func:`official_to_torchvision`); ``swin3d_b_kinetics400_22k`` and ``swin3d_t_kinetics400`` are
torchvision's own (Kinetics-400) checkpoints. Provenance records the sha256 of the file loaded and the converter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aqa_pipeline.encoders.base import Encoded, FrozenEncoder, LoadedWeights, OutputKind, kind_provenance
from aqa_pipeline.encoders.weights import load_label_file, resolve_weights, sha256_of
from aqa_pipeline.store.schema import PUBLISHED_FEATURES, KindProvenance
from aqa_pipeline.video.presets import Preset


@dataclass(frozen=True)
class VideoSwinInfo:
    """Metadata kept beside each architecture: store kind, feature size, default and allowed weights."""

    arch: str
    kind: str
    dim: int
    weights: tuple[str, ...]  # registry entries; the first is the default


VIDEO_SWIN: dict[str, VideoSwinInfo] = {
    info.arch: info
    for info in [
        VideoSwinInfo(
            "swin3d_b", "vst", dim=1024, weights=("vst_b_kinetics600_22k", "swin3d_b_kinetics400_22k")
        ),
        VideoSwinInfo("swin3d_t", "vst_t", dim=768, weights=("swin3d_t_kinetics400",)),
    ]
}
# The class names each checkpoint's classifier predicts, in logit order.
LABELS = {
    "vst_b_kinetics600_22k": "kinetics600_labels",
    "swin3d_b_kinetics400_22k": "kinetics400_labels",
    "swin3d_t_kinetics400": "kinetics400_labels",
}

# (embed dim, depths) of an official checkpoint → the torchvision architecture with that shape.
_OFFICIAL_SHAPES = {
    (96, (2, 2, 6, 2)): "swin3d_t",
    (96, (2, 2, 18, 2)): "swin3d_s",
    (128, (2, 2, 18, 2)): "swin3d_b",
}
OFFICIAL_CONVERTER = "aqa_pipeline.encoders.swin:official_to_torchvision"
LAYER = "last stage after the final LayerNorm"
POOLING = "adaptive average over (T/2, H/32, W/32)"


def gdlt_release_provenance() -> KindProvenance:
    """GDLT's published Fis-V / RG features (``swintx_avg_fps25_clip32``): the record our own ``swin3d-b`` +
    ``gdlt`` extraction writes, with the weights named but unhashed (the release ships features, not the file),
    so a model trained on the release scores videos we extract."""
    from aqa_pipeline.video.presets import get_preset

    release = {"release": "GDLT (CVPR'22) swintx_avg_fps25_clip32", "source_fps": 25}  # Fis-V and RG: 25 fps
    output = OutputKind("vst", 1024, LAYER, POOLING, extra=release)
    weights = LoadedWeights("vst_b_kinetics600_22k", None, PUBLISHED_FEATURES)
    return kind_provenance("swin3d-b", output, weights, "imagenet", get_preset("gdlt"))


def _build_torchvision(arch: str, **kwargs: Any) -> nn.Module:
    from torchvision.models import video

    builder: Callable[..., nn.Module] = getattr(video, arch)
    return builder(weights=None, **kwargs)


def _get_info(arch: str) -> VideoSwinInfo:
    if arch not in VIDEO_SWIN:
        raise KeyError(f"unknown Video Swin architecture {arch!r}; known: {', '.join(VIDEO_SWIN)}")
    return VIDEO_SWIN[arch]


class VideoSwinEncoder(FrozenEncoder):
    """torchvision Video Swin split into trunk (up to the average pool: the clip feature) and classifier."""

    trained_normalisation = "imagenet"

    def __init__(
        self, arch: str, weights: LoadedWeights, state: dict[str, torch.Tensor] | None = None
    ) -> None:
        info = _get_info(arch)
        network = _build_torchvision(arch)
        classifier = None
        if state is not None:
            head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
            network.head = nn.Identity()
            try:
                network.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
            except RuntimeError as error:
                raise ValueError(f"{weights.path}: not a {arch} checkpoint ({error})") from error
            if head:
                classifier = nn.Linear(info.dim, head["weight"].shape[0])
                classifier.load_state_dict(head)
        network.head = nn.Identity()
        self.info = info
        self.classifier = classifier.eval() if classifier is not None else None
        super().__init__(arch.replace("_", "-"), info.kind, network, weights)

    @classmethod
    def load(
        cls,
        arch: str = "swin3d_b",
        weights: str | Path | None = None,
        *,
        weights_name: str | None = None,
        random: bool = False,
    ) -> VideoSwinEncoder:
        """Registry entry ``weights_name`` (default: the architecture's first) or an explicit file, in the official
        Video-Swin-Transformer layout (converted on load) or torchvision's."""
        info = _get_info(arch)
        if random:
            return cls(arch, LoadedWeights.random())
        weights_name = weights_name or info.weights[0]
        if weights_name not in info.weights:
            raise ValueError(
                f"weights {weights_name!r} do not fit {arch}; choose one of {', '.join(info.weights)}"
            )
        path = resolve_weights(weights_name, weights)
        state, converter = load_swin_state(path)
        found = _official_architecture(state, path) if converter else arch
        if found != arch:
            raise ValueError(f"{path}: an official checkpoint of {found}, not {arch}")
        return cls(arch, LoadedWeights(weights_name, str(path), sha256_of(path), converter), state)

    def to(self, device: str | torch.device) -> VideoSwinEncoder:
        super().to(device)
        if self.classifier is not None:
            self.classifier.to(self.device)
        return self

    def load_class_names(self) -> list[str] | None:
        if self.classifier is None:
            return None
        names = load_label_file(resolve_weights(LABELS[self.weights.name]))
        if len(names) != self.classifier.out_features:
            raise ValueError(
                f"{self.weights.name}: {len(names)} labels for {self.classifier.out_features} logits"
            )
        return names

    def outputs(self, preset: Preset) -> list[OutputKind]:
        return [OutputKind(self.primary_kind, self.info.dim, LAYER, POOLING)]

    def _forward(self, x: torch.Tensor, with_logits: bool) -> Encoded:
        features = self.network(x)
        logits = self.classifier(features) if with_logits and self.classifier is not None else None
        return Encoded({self.primary_kind: features}, logits)


def load_swin_state(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """A Video Swin checkpoint as a torchvision state_dict, and the converter applied (None: already torchvision)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    if not any(k.removeprefix("module.").startswith("backbone.") for k in state):
        return state, None
    return official_to_torchvision(state, path), OFFICIAL_CONVERTER


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


def official_to_torchvision(official: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Official Video-Swin-Transformer state_dict → torchvision ``swin3d_*`` keys, checked by a strict load.

    The architecture is inferred from the embedding width and stage depths. ``relative_position_index`` buffers
    are deterministic functions of the window size: taken from the model, and if the checkpoint carries them they
    must agree (another window size would silently compute something else).
    """
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
    return state
