"""The one protocol every frozen stage-one encoder implements: uint8 clips in, ``{kind: tensor}`` out.

An encoder declares what it writes (:class:`OutputKind`: store kind, dim, dtype, layer, pooling), the input
normalisation its weights were trained on, whether it is a 2-D (per-frame) model, and where its weights came from
(:class:`LoadedWeights`, with the sha256 of the file actually loaded). The extraction loop knows nothing else about
it: adding an encoder is one file with a :class:`FrozenEncoder` subclass, one line in
:mod:`aqa_pipeline.encoders.registry` and its test.

The shared ``__call__`` does what every encoder needs on its device: uint8 (B, L, H, W, 3) → float (B, 3, L, H, W)
normalised in place, the channels-last-3d layout where it helps (I3D), autocast (bf16 where supported, else fp16)
on CUDA and fp32 on CPU.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from aqa_pipeline.store.schema import KindProvenance
from aqa_pipeline.video.presets import NORMALISATIONS, Preset

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random (TESTS ONLY: meaningless features)"


@dataclass(frozen=True)
class OutputKind:
    """One feature kind an encoder writes."""

    kind: str
    dim: int | tuple[int, ...]
    layer: str
    pooling: str
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedWeights:
    """Which checkpoint an encoder runs: registry entry, the file loaded, its sha256 and any key converter."""

    name: str | None
    path: str | None
    sha256: str | None  # None: randomly initialised
    converter: str | None = None

    @classmethod
    def random(cls) -> LoadedWeights:
        return cls(name=None, path=None, sha256=None)

    @property
    def is_random(self) -> bool:
        return self.sha256 is None


@dataclass
class Encoded:
    """One batch's outputs: features per kind (B, ...) and, when asked and available, classifier logits."""

    features: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None


class FrozenEncoder(ABC):
    """A frozen network behind the stage-one protocol (subclasses: one per architecture family)."""

    trained_normalisation: ClassVar[str]  # what the weights expect (a key of NORMALISATIONS)
    per_frame: ClassVar[bool] = False  # 2-D encoders: every clip is one frame
    channels_last: ClassVar[bool] = False  # 3-D convolutions run faster channels-last on CPU and GPU

    def __init__(self, name: str, kind: str, network: nn.Module, weights: LoadedWeights) -> None:
        self.name = name
        self.primary_kind = kind
        self.network = network.eval()
        self.weights = weights
        self.class_names: list[str] | None = None  # set by enable_predictions() (--show-pred)
        self.normalisation = self.trained_normalisation
        self.to("cpu")
        if weights.is_random:
            log.warning("%s: RANDOM weights - features are meaningless (tests and benchmarks only)", name)

    @abstractmethod
    def outputs(self, preset: Preset) -> list[OutputKind]:
        """The kinds this encoder writes with ``preset``; the first is ``primary_kind``, its clip feature."""

    @abstractmethod
    def _forward(self, x: torch.Tensor, with_logits: bool) -> Encoded:
        """Normalised float clips (B, 3, L, H, W) → outputs."""

    def load_class_names(self) -> list[str] | None:
        """The classifier's class names in logit order, or None where the loaded weights have no classifier."""
        return None

    def enable_predictions(self) -> None:
        """Turn on logits (``--show-pred``); refused for weights without a classifier."""
        names = self.load_class_names()
        if names is None:
            raise ValueError(f"{self.name}: the loaded weights have no classifier to show predictions with")
        self.class_names = names

    @property
    def has_classifier(self) -> bool:
        return self.class_names is not None

    def with_normalisation(self, normalisation: str) -> FrozenEncoder:
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; choose {', '.join(NORMALISATIONS)}")
        self.normalisation = normalisation
        return self.to(self.device)

    def to(self, device: str | torch.device) -> FrozenEncoder:
        self.device = torch.device(device)
        layout = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        self.network = self.network.to(self.device, memory_format=layout)
        mean, std = NORMALISATIONS[self.normalisation]
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1, 1) * 255
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1, 1) * 255
        self._autocast = None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self._autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return self

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor, with_logits: bool = False) -> Encoded:
        """uint8 clips (B, L, H, W, 3) on this encoder's device → :class:`Encoded`."""
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"{self.name}: expected uint8 clips (B, L, H, W, 3), got {tuple(clips.shape)}")
        # (B, L, H, W, 3) is already the channels-last-3d layout of (B, 3, L, H, W); normalising in place
        # avoids two more full-size float tensors.
        x = clips.permute(0, 4, 1, 2, 3).float().sub_(self._mean).div_(self._std)
        if not self.channels_last:
            x = x.contiguous()
        with torch.autocast(
            self.device.type, dtype=self._autocast or torch.float32, enabled=bool(self._autocast)
        ):
            return self._forward(x, with_logits and self.has_classifier)

    def provenance(self, preset: Preset) -> dict[str, KindProvenance]:
        """The provenance of every kind this encoder writes with ``preset``, written once into the store."""
        return {
            out.kind: kind_provenance(self.name, out, self.weights, self.normalisation, preset)
            for out in self.outputs(preset)
        }


def kind_provenance(
    encoder: str, output: OutputKind, weights: LoadedWeights, normalisation: str, preset: Preset
) -> KindProvenance:
    """The record of one kind made by ``encoder`` with ``weights`` on ``preset``'s clips (also what a published
    release made the same way declares, so its features and ours are recognised as the same recipe)."""
    return KindProvenance(
        encoder=encoder,
        preset=preset.name,
        weights=weights.name or (weights.path or RANDOM_WEIGHTS),
        weights_sha256=weights.sha256 or RANDOM_WEIGHTS,
        weights_converter=weights.converter or "none",
        transform=json.dumps(preset.describe(), sort_keys=True),
        clip_len=preset.clip_len,
        fps=preset.target_fps or "native",
        frame_rate=preset.frame_rate_note(),
        normalisation=normalisation,
        clip_starts=list(preset.clip_starts) if preset.clip_starts else f"tiled every {preset.clip_len}",
        times="source-video frame index of each clip's first frame",
        padding=f"{preset.pad} (per-video count in the feature attribute padded_frames)",
        dim=output.dim,
        dtype=output.dtype,
        layer=output.layer,
        pooling=output.pooling,
        extra=output.extra,
    )
