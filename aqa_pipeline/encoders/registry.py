"""The encoders ``aqa-extract --encoder`` offers, with the preset each runs by default.

One line per encoder; the loader (and torch) is imported only when the encoder is used, so ``--help`` stays
instant.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aqa_pipeline.encoders.base import FrozenEncoder
    from aqa_pipeline.video.presets import Preset


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    kind: str  # the store kind of its clip feature
    default_preset: str
    description: str
    loader: str  # "module:callable(weights, *, random, **options)"
    options: dict  # fixed keyword arguments of the loader (the architecture)
    supports_maps: bool = False


ENCODERS: dict[str, EncoderEntry] = {
    entry.name: entry
    for entry in [
        EncoderEntry(
            "i3d", "i3d", "action-net", "Kinetics-400 Inception-I3D, Mixed_5c pooled, 1024-d per clip",
            "aqa_pipeline.encoders.i3d:I3DEncoder.load", {}, supports_maps=True,
        ),
        EncoderEntry(
            "swin3d-b", "vst", "gdlt", "Video Swin-B (GDLT's K600 backbone by default), 1024-d per clip",
            "aqa_pipeline.encoders.swin:VideoSwinEncoder.load", {"arch": "swin3d_b"},
        ),
        EncoderEntry(
            "swin3d-t", "vst_t", "gdlt", "Video Swin-T (torchvision K400), 768-d per clip",
            "aqa_pipeline.encoders.swin:VideoSwinEncoder.load", {"arch": "swin3d_t"},
        ),
        EncoderEntry(
            "resnet50", "resnet50_frames", "frames", "ImageNet ResNet-50 per frame, 2048-d",
            "aqa_pipeline.encoders.image:FrameEncoder.load", {"name": "resnet50"},
        ),
        EncoderEntry(
            "mobilenet-v2", "mobilenet_v2_frames", "frames", "ImageNet MobileNetV2 per frame, 1280-d",
            "aqa_pipeline.encoders.image:FrameEncoder.load", {"name": "mobilenet_v2"},
        ),
    ]
}  # fmt: skip

# The encoder of each dataset's published features, for ``aqa-extract --dataset NAME`` without ``--encoder``.
DATASET_ENCODERS = {"fis-v": "swin3d-b", "rhythmic-gymnastics": "swin3d-b", "mit-skating": "swin3d-b"}
DEFAULT_ENCODER = "i3d"


def default_encoder(dataset: str) -> str:
    return DATASET_ENCODERS.get(dataset, DEFAULT_ENCODER)


def get_entry(name: str) -> EncoderEntry:
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name]


def load_encoder(
    name: str,
    weights: str | Path | None = None,
    *,
    random: bool = False,
    map_endpoint: str | None = None,
) -> FrozenEncoder:
    """Encoder ``name`` with real weights (explicit file, $AQA_WEIGHTS_DIR, cache, download) or, for tests and
    benchmarks only, random ones (announced as a warning and recorded in provenance)."""
    entry = get_entry(name)
    if map_endpoint is not None and not entry.supports_maps:
        raise ValueError(f"--maps: encoder {name} has no mid-level maps to keep (only i3d has)")
    module, attribute = entry.loader.split(":")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    options = dict(entry.options)
    if map_endpoint is not None:
        options["map_endpoint"] = map_endpoint
    return target(weights=weights, random=random, **options)


def check_normalisation(encoder: FrozenEncoder, preset: Preset, explicit: bool) -> None:
    """Refuse a preset whose input normalisation the encoder was not trained for, unless chosen explicitly."""
    if explicit or preset.normalisation == encoder.trained_normalisation:
        return
    raise ValueError(
        f"preset {preset.name!r} normalises with {preset.normalisation!r} but {encoder.name} was trained on "
        f"{encoder.trained_normalisation!r} input: add --normalisation {encoder.trained_normalisation} (the "
        f"encoder's own), or --normalisation {preset.normalisation} to force the preset's for an experiment"
    )
