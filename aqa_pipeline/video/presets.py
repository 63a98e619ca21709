"""Sampling presets: how each paper's code turned a video into clips, as data.

The AQA code lines disagree on clip starts, frame selection, resizing and normalisation (see the extraction
reference notes), so "I3D features" is not one thing. A preset pins all of it down, and ``Preset.describe()``
goes into the feature store's provenance, clip starts included, so two stores can be compared honestly.

Normalisation: the MTL-AQA lineage (MUSDL, CoRe, TPT, FineDiving) fed ImageNet mean/std into an I3D that it then
fine-tuned end to end. A *frozen* Kinetics I3D was trained on [-1, 1] input, so the I3D presets default to
``minus1_1`` and record the papers' choice as ``paper_normalisation``; ``preset.with_normalisation("imagenet")``
(``--normalisation imagenet`` on the command line) reproduces the papers' input exactly.

Short samples are never dropped: ``pad`` says how missing frames are filled (``repeat_last`` frame, or ``loop``
from the start), and every sample records how many frames were padded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # name: (mean, std) applied to x / 255
    "minus1_1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
PAD_POLICIES = ("repeat_last", "loop")


@dataclass(frozen=True)
class SamplingPlan:
    """Which frames of a sample feed which clip.

    ``frame_indices`` are positions in the sample's frame range (0 = its first frame), repeated where padded;
    clip ``k`` is ``frame_indices[clip_starts[k] : clip_starts[k] + clip_len]``.
    """

    frame_indices: np.ndarray
    clip_starts: tuple[int, ...]
    clip_len: int
    padded_frames: int

    def clip_frames(self) -> np.ndarray:
        """(num_clips, clip_len) sample-relative frame indices of every clip."""
        return np.stack([self.frame_indices[s : s + self.clip_len] for s in self.clip_starts])


@dataclass(frozen=True)
class Preset:
    """One paper's clip layout and spatial recipe.

    Temporal: optionally subsample to ``target_fps`` (ACTION-NET's stride rule), then either take a fixed window
    of ``num_frames`` (``selection`` ``last``: the frames ending at the sample's end, or ``linspace``: spread over
    the sample) cut into clips at ``clip_starts``, or (``num_frames=None``) tile all frames into non-overlapping
    clips, trimming the remainder ``centre``-d or from the ``tail``.
    Spatial: resize (``short_side``/``height`` keep the aspect, ``fixed`` is (width, height)), centre-crop
    ``crop_hw``, then resize to ``output_hw`` if different (the GDLT/ACTION-NET aspect squash).
    """

    name: str
    source: str
    clip_len: int
    num_frames: int | None
    clip_starts: tuple[int, ...] | None
    selection: str  # "last" | "linspace" | "tile"
    remainder: str  # "centre" | "tail" (tiling only)
    target_fps: float | None
    resize_mode: str  # "short_side" | "height" | "fixed"
    resize_to: int | tuple[int, int]
    crop_hw: tuple[int, int]
    output_hw: tuple[int, int]
    normalisation: str
    paper_normalisation: str
    pad: str = "repeat_last"
    notes: str = ""

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"preset {self.name}: unknown normalisation {self.normalisation!r}")
        if self.pad not in PAD_POLICIES:
            raise ValueError(f"preset {self.name}: unknown pad policy {self.pad!r}; choose {PAD_POLICIES}")
        if self.num_frames is not None:
            starts = self.clip_starts or ()
            if not starts or max(starts) + self.clip_len > self.num_frames:
                raise ValueError(
                    f"preset {self.name}: clips {starts} × {self.clip_len} exceed {self.num_frames}"
                )

    # -- temporal --------------------------------------------------------------------------------------------
    def window(self, start_frame: int | None, end_frame: int | None, total_frames: int) -> tuple[int, int]:
        """The frame range ``[first, stop)`` of a source video that a sample reads.

        Whole video when the sample has no range. ``last`` presets read the ``num_frames`` before ``end_frame``
        (CoRe's ``[end_frame - 103, end_frame)``, reaching before ``start_frame`` for short dives); the others
        read the annotated range ``[start_frame, end_frame]`` inclusive.
        """
        if start_frame is None or end_frame is None:
            return 0, total_frames
        if self.selection == "last":
            stop = min(end_frame, total_frames)
            return max(0, stop - self.num_frames), stop
        return max(0, start_frame), min(end_frame + 1, total_frames)

    def plan(self, available: int, fps: float) -> SamplingPlan:
        """The clips of a sample with ``available`` frames at ``fps``; pads (never drops) short samples."""
        if available <= 0:
            raise ValueError(f"preset {self.name}: a sample with {available} frames cannot be sampled")
        kept = self._subsample(available, fps)
        if self.num_frames is not None:
            if self.selection == "last":
                chosen, padded = self._padded(kept, self.num_frames, keep="last")
            else:  # linspace over the sample; duplicates fill short samples, as the authors' code does
                chosen = kept[np.linspace(0, len(kept) - 1, self.num_frames).astype(np.int64)]
                padded = max(0, self.num_frames - len(kept))
            return SamplingPlan(chosen, tuple(self.clip_starts), self.clip_len, padded)
        chosen, padded = (
            self._padded(kept, self.clip_len, keep="first") if len(kept) < self.clip_len else (kept, 0)
        )
        num_clips = len(chosen) // self.clip_len
        offset = (len(chosen) % self.clip_len) // 2 if self.remainder == "centre" else 0
        chosen = chosen[offset : offset + num_clips * self.clip_len]
        return SamplingPlan(chosen, tuple(range(0, len(chosen), self.clip_len)), self.clip_len, padded)

    def _subsample(self, available: int, fps: float) -> np.ndarray:
        if self.target_fps is None or fps <= self.target_fps:
            return np.arange(available)
        # ACTION-NET: stride = N // int(N * target / fps), keeping frames whose 1-based number is a multiple.
        stride = max(1, available // max(1, int(available * self.target_fps / fps)))
        kept = np.arange(stride - 1, available, stride)
        return kept if len(kept) else np.arange(1)

    def _padded(self, kept: np.ndarray, length: int, keep: str) -> tuple[np.ndarray, int]:
        if len(kept) >= length:
            return (kept[-length:] if keep == "last" else kept[:length]), 0
        missing = length - len(kept)
        if self.pad == "loop":
            fill = np.resize(kept, missing)
        else:
            fill = np.full(missing, kept[-1])
        return np.concatenate([kept, fill]), missing

    # -- spatial ---------------------------------------------------------------------------------------------
    def transform_frame(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) → uint8 (output_h, output_w, 3): resize, centre crop, optional squash."""
        height, width = frame.shape[:2]
        if self.resize_mode == "short_side":
            scale = self.resize_to / min(height, width)
            size = (round(width * scale), round(height * scale))
        elif self.resize_mode == "height":
            size = (round(width * self.resize_to / height), self.resize_to)
        else:
            size = tuple(self.resize_to)
        frame = _resize(frame, size)
        crop_h, crop_w = self.crop_hw
        if frame.shape[0] < crop_h or frame.shape[1] < crop_w:  # narrow videos: grow until the crop fits
            scale = max(crop_h / frame.shape[0], crop_w / frame.shape[1])
            frame = _resize(
                frame, (int(np.ceil(frame.shape[1] * scale)), int(np.ceil(frame.shape[0] * scale)))
            )
        top, left = (frame.shape[0] - crop_h) // 2, (frame.shape[1] - crop_w) // 2
        frame = frame[top : top + crop_h, left : left + crop_w]
        if self.output_hw != self.crop_hw:
            frame = _resize(frame, (self.output_hw[1], self.output_hw[0]))
        return np.ascontiguousarray(frame)

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def with_normalisation(self, normalisation: str) -> Preset:
        """The same preset with another input normalisation (``"paper"`` = what the authors used)."""
        chosen = self.paper_normalisation if normalisation == "paper" else normalisation
        return dataclasses.replace(self, normalisation=chosen)

    def with_pad(self, pad: str) -> Preset:
        return dataclasses.replace(self, pad=pad)

    def per_frame(self) -> Preset:
        """The same frames, one per clip: what a 2-D encoder sees (every frame the clip layout would use, at the
        preset's frame rate)."""
        if self.clip_len == 1:
            return self
        starts = tuple(range(self.num_frames)) if self.num_frames is not None else None
        return dataclasses.replace(self, name=f"{self.name}/frames", clip_len=1, clip_starts=starts)

    def frame_rate_note(self) -> str:
        if self.target_fps is None:
            return "native: every source frame, no resampling"
        return f"subsampled to {self.target_fps:g} fps (stride N // int(N * fps / source fps))"

    @property
    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        return NORMALISATIONS[self.normalisation]

    def describe(self) -> dict:
        """Everything that determines the features, for the store's provenance (JSON-serialisable)."""
        description = dataclasses.asdict(self)
        description["mean"], description["std"] = self.mean_std
        return description


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear when enlarging, area averaging when shrinking (close to PIL's antialiased bilinear)."""
    width, height = size
    if (width, height) == (frame.shape[1], frame.shape[0]):
        return frame
    shrinking = width * height < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


_MTL_AQA_COMMON = dict(
    clip_len=16,
    num_frames=103,
    selection="last",
    remainder="centre",
    target_fps=None,
    resize_mode="fixed",
    resize_to=(455, 256),
    crop_hw=(224, 224),
    output_hw=(224, 224),
    normalisation="minus1_1",
    paper_normalisation="imagenet",
)

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            name="mtl-aqa",
            source="CoRe (yuxumin/CoRe, models/Backbone.py)",
            clip_starts=(0, 10, 20, 30, 40, 50, 60, 70, 80, 86),
            notes="103 frames ending at end_frame; 10 clips x 16 with CoRe's last start 86 (the final clip is "
            "frames 86..101, frame 102 unused). MUSDL ends at 87 (frames 87..102): preset 'mtl-aqa-musdl'. "
            "Resize 455x256, centre crop 224; bilinear (MUSDL's random test-time interpolation is not copied).",
            **_MTL_AQA_COMMON,
        ),
        Preset(
            name="mtl-aqa-musdl",
            source="MUSDL (nzl-thu/MUSDL, MTL-AQA/opts.py)",
            clip_starts=(0, 10, 20, 30, 40, 50, 60, 70, 80, 87),
            notes="As 'mtl-aqa' but MUSDL's last clip start 87 (the final 16 frames).",
            **_MTL_AQA_COMMON,
        ),
        Preset(
            name="aqa-7",
            source="CoRe / MUSDL on AQA-7 (same 103-frame protocol as MTL-AQA)",
            clip_starts=(0, 10, 20, 30, 40, 50, 60, 70, 80, 86),
            notes="Identical to 'mtl-aqa' (CoRe's starts); AQA-7 samples are whole clips, so the window is "
            "the last 103 frames of each.",
            **_MTL_AQA_COMMON,
        ),
        Preset(
            name="tpt",
            source="TPT (baiyang4/aqa_tpt, dataloader_pair_MLT.py)",
            clip_starts=tuple(range(0, 100, 5)),
            notes="20 clips x 8 frames at stride 5 (3-frame overlap) over 103 frames; Mixed_5c has T=1.",
            **{**_MTL_AQA_COMMON, "clip_len": 8},
        ),
        Preset(
            name="finediving",
            source="FineDiving (xujinglin/FineDiving, models/Backbone.py, tools/builder.py)",
            clip_len=16,
            num_frames=96,
            clip_starts=tuple(range(0, 90, 10)),
            selection="linspace",
            remainder="centre",
            target_fps=None,
            resize_mode="fixed",
            resize_to=(112, 200),
            crop_hw=(112, 112),
            output_hw=(112, 112),
            normalisation="minus1_1",
            paper_normalisation="imagenet",
            notes="96 frames linspace-sampled over the annotated dive, 9 clips x 16 at 0,10,...,80. The test "
            "transform Resize((200,112)) of torchvideotransforms swaps to (width 112, height 200) for PIL "
            "images, then CenterCrop 112: 112x112 input, Mixed_5c is 2x4x4.",
        ),
        Preset(
            name="gdlt",
            source="GDLT (xuangch/CVPR22_GDLT, rg_swintx.py)",
            clip_len=32,
            num_frames=None,
            clip_starts=None,
            selection="tile",
            remainder="centre",
            target_fps=None,
            resize_mode="short_side",
            resize_to=256,
            crop_hw=(224, 300),
            output_hw=(224, 224),
            normalisation="imagenet",
            paper_normalisation="imagenet",
            notes="Non-overlapping 32-frame clips at native fps, remainder trimmed equally from both ends; short "
            "side 256, centre crop 224x300, squash to 224x224. The paper's encoder is Video Swin-B (K600). Frame "
            "rate: rg_swintx.py never resamples; its output folder 'fps25' names the native 25 fps of the Fis-V "
            "and RG videos, so other videos keep their own rate here too.",
        ),
        Preset(
            name="action-net",
            source="ACTION-NET (lingan1996/ACTION-NET, extract_dynamic_feat.py)",
            clip_len=16,
            num_frames=None,
            clip_starts=None,
            selection="tile",
            remainder="tail",
            target_fps=5.0,
            resize_mode="height",
            resize_to=224,
            crop_hw=(224, 300),
            output_hw=(224, 224),
            normalisation="minus1_1",
            paper_normalisation="minus1_1",
            notes="Frames subsampled to 5 fps (stride N // int(N*5/fps), 1-based multiples), non-overlapping "
            "16-frame clips, tail dropped; height 224 keeping aspect, centre crop 224x300, squash to 224x224.",
        ),
        Preset(
            name="frames",
            source="aqa-pipeline (ImageNet frame encoders for frame-level baselines)",
            clip_len=1,
            num_frames=None,
            clip_starts=None,
            selection="tile",
            remainder="tail",
            target_fps=1.0,
            resize_mode="short_side",
            resize_to=256,
            crop_hw=(224, 224),
            output_hw=(224, 224),
            normalisation="imagenet",
            paper_normalisation="imagenet",
            notes="One frame per second, short side 256, centre crop 224x224, ImageNet mean/std: the standard "
            "ImageNet evaluation transform, for 2-D encoders (resnet50, mobilenet-v2).",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


# The preset each dataset's published features used, for ``aqa-extract --dataset NAME`` without ``--preset``.
DATASET_PRESETS = {
    "mtl-aqa": "mtl-aqa",
    "aqa-7": "aqa-7",
    "finediving": "finediving",
    "rhythmic-gymnastics": "gdlt",
    "fis-v": "gdlt",
    "mit-skating": "gdlt",
}
