"""NanoTrack V2 (HonglinChu/SiamTrackers) in plain PyTorch, and a tracker that runs many videos in lock-step.

Why a re-implementation: the released tracker runs one video at a time through Python, and OpenCV's
``cv2.TrackerNano`` is a CPU-only, one-video-at-a-time black box. Here the template and search crops of all active
videos go through the network in one forward pass, on CPU or GPU.

Network (from the V2 config, module names matching ``nanotrack_v2.pth`` so that loading is ``strict``):
a truncated MobileNetV3-Small backbone (stride 16, 48 channels), an unused ``neck`` that only exists in the
checkpoint, and the V2 head: *pixel-wise* correlation (every template position against every search position,
a batched matmul) with a channel-attention gate, then classification and box towers.

Two pre/post-processing variants (``variant=``), both with the same weights:

* ``"repo"`` (default) - the original tracker the weights were tuned with: BGR input, penalty_k 0.15,
  window influence 0.49, size lr 0.385, a Hann window, padding with the first frame's mean colour.
* ``"opencv"`` - what ``cv2.TrackerNano`` does: RGB input, 0.055 / 0.455 / 0.37, sqrt-Hann window, integer
  crop arithmetic, the current frame's mean as padding, and its scale penalty against the target's *centre
  position* (a bug in OpenCV, kept so that the two agree; see ``nanotrack-reference.md`` section 6).

The default is ``"repo"`` because it is NanoTrack as published; ``"opencv"`` exists to check this implementation
against an independent one and for users who want cv2's exact boxes.

Input frames are RGB uint8 ``(H, W, 3)`` arrays (what ``decord`` gives); the variant flips them to BGR itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqa_pipeline.encoders.weights import resolve_weights

Variant = Literal["repo", "opencv"]
CropBackend = Literal["cv2", "torch"]
Box = Sequence[float]  # x1, y1, x2, y2 in pixels
InitDetector = Callable[[list[np.ndarray]], Sequence[Box | None]]

TEMPLATE_SIZE = 127
SEARCH_SIZE = 255
STRIDE = 16
SCORE_SIZE = 16
CONTEXT_AMOUNT = 0.5
MIN_SIDE = 10.0

# ------------------------------------------------------------------------------------------------- network


class SqueezeExcite(nn.Module):
    """Channel gate: global pool -> Linear -> ReLU -> Linear -> hard-sigmoid -> scale the input."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Hardsigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


class InvertedResidual(nn.Module):
    """MobileNetV3 block in NanoTrack's layout: the SE gate sits *before* the activation after the depthwise conv."""

    def __init__(
        self,
        c_in: int,
        expanded: int,
        c_out: int,
        kernel: int,
        stride: int,
        se_hidden: int | None,
        hswish: bool,
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        se = SqueezeExcite(expanded, se_hidden) if se_hidden else nn.Identity()
        depthwise = _conv_bn(expanded, expanded, kernel, stride, groups=expanded)
        project = _conv_bn(expanded, c_out)
        if expanded == c_in:  # block 1: no expansion conv
            layers = [*depthwise, act(inplace=True), se, *project]
        else:
            layers = [
                *_conv_bn(c_in, expanded),
                act(inplace=True),
                *depthwise,
                se,
                act(inplace=True),
                *project,
            ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (kernel, expanded channels, out channels, SE hidden width or None, hswish?, stride) for features.1 .. features.8
_BACKBONE_BLOCKS = [
    (3, 16, 16, 8, False, 2),
    (3, 72, 24, None, False, 2),
    (3, 88, 24, None, False, 1),
    (5, 96, 40, 24, True, 2),
    (5, 240, 40, 64, True, 1),
    (5, 240, 40, 64, True, 1),
    (5, 120, 48, 32, True, 1),
    (5, 144, 48, 40, True, 1),
]


class NanoTrackBackbone(nn.Module):
    """Truncated MobileNetV3-Small: 3x127x127 -> 48x8x8 (template), 3x255x255 -> 48x16x16 (search)."""

    out_channels = 48

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 16, 3, 2), nn.Hardswish(inplace=True))]
        c_in = 16
        for kernel, expanded, c_out, se_hidden, hswish, stride in _BACKBONE_BLOCKS:
            layers.append(InvertedResidual(c_in, expanded, c_out, kernel, stride, se_hidden, hswish))
            c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class PixelwiseCorrelation(nn.Module):
    """V2's correlation: output channel k is template position (k // 8, k % 8) dotted with every search position."""

    def __init__(self, channels: int = 48, template_positions: int = 64) -> None:
        super().__init__()
        self.conv_kernel = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.conv_search = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.CA_layer = ChannelAttention(template_positions)

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        z = self.conv_kernel(zf).flatten(2).transpose(1, 2)  # B x 64 x C
        x = self.conv_search(xf)
        corr = torch.bmm(z, x.flatten(2)).unflatten(2, x.shape[2:])  # B x 64 x H x W
        return self.CA_layer(corr)


def _tower(c_in: int, width: int = 96, repeats: int = 6) -> nn.Sequential:
    layers: list[nn.Module] = []
    for r in range(repeats):
        c = c_in if r == 0 else width
        layers += [
            nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False),
            nn.Conv2d(c, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(inplace=True),
        ]
    return nn.Sequential(*layers)


class NanoTrackHead(nn.Module):
    """V2 head ("ban_head"): returns foreground logits B x 2 x H x W and box distances (l, t, r, b) B x 4 x H x W."""

    def __init__(self) -> None:
        super().__init__()
        self.corr_pw_cls = PixelwiseCorrelation()
        self.corr_pw_reg = PixelwiseCorrelation()
        self.cls_pw_tower = _tower(64)
        self.bbox_pw_tower = _tower(64)
        self.cls_pred = nn.Sequential(nn.Conv2d(96, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(96, 4, 1))

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.cls_pred(self.cls_pw_tower(self.corr_pw_cls(zf, xf)))
        loc = torch.exp(self.bbox_pred(self.bbox_pw_tower(self.corr_pw_reg(zf, xf))))
        return cls, loc


class UnusedNeck(nn.Module):
    """Stored in the checkpoint but never run by NanoTrack V2 (it expects 64 channels; the backbone gives 48).
    Declared only so that ``load_state_dict(strict=True)`` accounts for every tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.downsample = nn.Sequential(nn.Conv2d(64, 64, 1, bias=False), nn.BatchNorm2d(64))


class NanoTrackV2(nn.Module):
    """The network: ``template(z)`` once per video, then ``forward(zf, x)`` per frame. Input is raw 0..255 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = NanoTrackBackbone()
        self.neck = UnusedNeck()
        self.ban_head = NanoTrackHead()

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone(z)

    def forward(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ban_head(zf, self.backbone(x))


def load_checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a NanoTrack training checkpoint, loaded with ``weights_only=True``.

    The file is ``{'epoch', 'state_dict', 'optimizer'}`` and the optimizer part pickles numpy scalars, which the
    safe unpickler rejects by default. We allow-list exactly those numpy globals rather than fall back to
    ``weights_only=False`` (which would execute arbitrary pickled code from a downloaded file).
    """
    numpy_globals = [
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        np.dtypes.Float64DType,
    ]
    with torch.serialization.safe_globals(numpy_globals):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(
            f"{path}: expected a NanoTrack checkpoint (a dict with 'state_dict'), got {type(checkpoint)}"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def nanotrack_v2(weights: str | Path | None = None) -> NanoTrackV2:
    """NanoTrack V2 with the released weights (registry name ``nanotrack_v2``), strictly loaded, in eval mode."""
    model = NanoTrackV2()
    model.load_state_dict(load_checkpoint_state_dict(resolve_weights("nanotrack_v2", weights)), strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------------------- tracker


@dataclass(frozen=True)
class TrackerConfig:
    """Post-processing constants of one variant (see the module docstring)."""

    penalty_k: float
    window_influence: float
    lr: float
    bgr: bool  # channel order the network is fed
    sqrt_window: bool

    @staticmethod
    def of(variant: Variant) -> TrackerConfig:
        if variant == "repo":
            return TrackerConfig(penalty_k=0.15, window_influence=0.49, lr=0.385, bgr=True, sqrt_window=False)
        if variant == "opencv":
            return TrackerConfig(
                penalty_k=0.055, window_influence=0.455, lr=0.37, bgr=False, sqrt_window=True
            )
        raise ValueError(f"unknown NanoTrack variant {variant!r}; expected 'repo' or 'opencv'")


@dataclass
class _BatchState:
    """Per-video tracking state as vectors over the active videos (one row per video)."""

    video: torch.Tensor  # long: index into the caller's list
    cx: torch.Tensor
    cy: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    img_w: torch.Tensor
    img_h: torch.Tensor
    fill: (
        torch.Tensor
    )  # B x 3 padding colour (repo: first frame's mean, floored; opencv: recomputed per frame)
    zf: torch.Tensor  # B x 48 x 8 x 8 template features

    def __len__(self) -> int:
        return len(self.video)

    def select(self, keep: torch.Tensor) -> _BatchState:
        return _BatchState(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def concat(self, other: _BatchState) -> _BatchState:
        return _BatchState(
            **{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)}
        )


def _check_frame(frame: object, video: int, index: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"video {video}, frame {index}: expected an RGB uint8 array (H, W, 3), got {got}")
    return frame


def crop_cv2(image: np.ndarray, x0: int, y0: int, side: int, out: int, fill: np.ndarray) -> np.ndarray:
    """The window [x0, x0+side) x [y0, y0+side) of ``image``, outside pixels set to ``fill``, resized to out x out
    with ``cv2.resize`` (bilinear), exactly as both reference trackers cut their patches."""
    h, w = image.shape[:2]
    patch = np.empty((side, side, 3), np.uint8)
    patch[:] = fill
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ix1 > ix0 and iy1 > iy0:
        patch[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return patch if side == out else cv2.resize(patch, (out, out))


def crop_torch(
    images: torch.Tensor,
    sizes: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    side: torch.Tensor,
    out: int,
    fill: torch.Tensor,
) -> torch.Tensor:
    """Batched crop with ``grid_sample``, for the GPU: B x 3 x H x W float images (zero-padded past each video's
    true ``sizes`` = (w, h)) -> B x 3 x out x out. Same geometry as :func:`crop_cv2`, with edge-clamped samples
    and integer rounding; cv2's fixed-point bilinear still differs by about one grey level."""
    steps = (torch.arange(out, device=images.device, dtype=torch.float32) + 0.5) / out
    side_f = side.to(torch.float32)[:, None]
    lo_x, lo_y = x0.to(torch.float32)[:, None], y0.to(torch.float32)[:, None]
    xs = (lo_x + steps * side_f - 0.5).clamp(lo_x, lo_x + side_f - 1)  # cv2.resize replicates the patch edge
    ys = (lo_y + steps * side_f - 0.5).clamp(lo_y, lo_y + side_f - 1)
    height, width = images.shape[2:]
    gx = (2 * xs + 1) / width - 1  # normalised for align_corners=False on the padded canvas
    gy = (2 * ys + 1) / height - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    # Centre on `fill` so that zero padding (outside the frame, and past each video's own size) reads as `fill`.
    col = torch.arange(width, device=images.device)
    row = torch.arange(height, device=images.device)
    inside = (col[None, None, :] < sizes[:, 0, None, None]) & (row[None, :, None] < sizes[:, 1, None, None])
    centred = (images - fill[:, :, None, None]) * inside[:, None]
    patch = F.grid_sample(centred, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (patch + fill[:, :, None, None]).round()


class NanoTracker:
    """Track B videos in lock-step with NanoTrack V2: one network forward per frame step for all active videos.

    ``crop``: ``"cv2"`` cuts patches on the CPU with cv2 (bit-exact with the reference trackers), ``"torch"`` cuts
    them on ``device`` with ``grid_sample`` (no host round-trip; ~0.92-0.95 closed-loop IoU with the cv2 crop).
    Default: cv2 on CPU, torch elsewhere.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        variant: Variant = "repo",
        crop: CropBackend | None = None,
        weights: str | Path | None = None,
        model: NanoTrackV2 | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.variant = variant
        self.config = TrackerConfig.of(variant)
        self.crop = crop or ("cv2" if self.device.type == "cpu" else "torch")
        if self.crop not in ("cv2", "torch"):
            raise ValueError(f"crop must be 'cv2' or 'torch', got {self.crop!r}")
        self.model = (model or nanotrack_v2(weights)).to(self.device).eval()
        # float32 everywhere in cv2; the original tracker does its arithmetic in numpy float64.
        self.dtype = torch.float32 if variant == "opencv" else torch.float64
        hann = torch.hann_window(SCORE_SIZE, periodic=False, dtype=torch.float64)
        window = torch.outer(hann, hann)
        window = window.sqrt() if self.config.sqrt_window else window
        self.window = window.flatten().to(self.device, self.dtype)
        offsets = (torch.arange(SCORE_SIZE, dtype=self.dtype) - SCORE_SIZE // 2) * STRIDE
        self.points_x = offsets.repeat(SCORE_SIZE).to(self.device)  # k = row * 16 + col
        self.points_y = offsets.repeat_interleave(SCORE_SIZE).to(self.device)

    # -- crops -------------------------------------------------------------------------------------------

    def _mean_colour(self, frames: list[np.ndarray]) -> torch.Tensor:
        means = np.stack([f.reshape(-1, 3).mean(axis=0) for f in frames])
        # repo: the mean is written into a uint8 buffer (floor); cv2: Scalar -> uint8 saturate_cast (round)
        means = np.floor(means) if self.variant == "repo" else np.rint(means)
        return torch.as_tensor(means, dtype=torch.float32, device=self.device)

    def _crops(
        self, frames: list[np.ndarray], state: _BatchState, side: torch.Tensor, out: int
    ) -> torch.Tensor:
        """B x 3 x out x out float network input centred on the state's boxes, in the variant's channel order."""
        if self.variant == "repo":
            x0 = torch.floor(state.cx - (side + 1) / 2 + 0.5).long()
            y0 = torch.floor(state.cy - (side + 1) / 2 + 0.5).long()
        else:
            x0 = state.cx.trunc().long() - torch.div(side + 1, 2, rounding_mode="floor")
            y0 = state.cy.trunc().long() - torch.div(side + 1, 2, rounding_mode="floor")
        if self.crop == "cv2":
            args = zip(
                frames,
                x0.tolist(),
                y0.tolist(),
                side.tolist(),
                state.fill.cpu().numpy().astype(np.uint8),
                strict=True,
            )
            patches = np.stack([crop_cv2(f, a, b, s, out, fill) for f, a, b, s, fill in args])
            batch = torch.from_numpy(patches).to(self.device).permute(0, 3, 1, 2).float()
        else:
            height, width = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
            canvas = torch.zeros((len(frames), height, width, 3), dtype=torch.uint8)
            for i, f in enumerate(frames):
                canvas[i, : f.shape[0], : f.shape[1]] = torch.from_numpy(f)
            images = canvas.to(self.device).permute(0, 3, 1, 2).float()
            sizes = torch.stack([state.img_w, state.img_h], dim=1).long()
            batch = crop_torch(images, sizes, x0, y0, side, out, state.fill)
        return batch.flip(1) if self.config.bgr else batch

    # -- the two steps -----------------------------------------------------------------------------------

    def _init(self, frames: list[np.ndarray], boxes: list[Box], videos: list[int]) -> _BatchState:
        as_t = lambda v: torch.as_tensor(v, dtype=self.dtype, device=self.device)  # noqa: E731
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.variant == "opencv":  # cv2 takes an integer Rect
            x, y, w, h = (
                np.trunc(b[:, 0]),
                np.trunc(b[:, 1]),
                np.trunc(b[:, 2] - b[:, 0]),
                np.trunc(b[:, 3] - b[:, 1]),
            )
            cx, cy = x + w * 0.5, y + h * 0.5
            pad = (w + h) * CONTEXT_AMOUNT
            side = np.trunc(np.sqrt(((w + pad) * (h + pad)).astype(np.float32)))
        else:
            x, y, w, h = b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
            pad = (w + h) * CONTEXT_AMOUNT
            # numpy rounds halves to even, like the original's Python round()
            side = np.round(np.sqrt((w + pad) * (h + pad)))
        state = _BatchState(
            video=torch.as_tensor(videos, dtype=torch.long, device=self.device),
            cx=as_t(cx),
            cy=as_t(cy),
            w=as_t(w),
            h=as_t(h),
            img_w=as_t([f.shape[1] for f in frames]),
            img_h=as_t([f.shape[0] for f in frames]),
            fill=self._mean_colour(frames),
            zf=torch.empty(0),
        )
        z = self._crops(
            frames, state, torch.as_tensor(side, dtype=torch.long, device=self.device), TEMPLATE_SIZE
        )
        state.zf = self.model.template(z)
        return state

    def _step(self, frames: list[np.ndarray], s: _BatchState) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every active video by one frame (updates ``s`` in place); returns xyxy boxes and scores."""
        if self.variant == "opencv":
            s.fill = self._mean_colour(frames)
            pad = torch.trunc(s.w + s.h) * CONTEXT_AMOUNT
            s_z = torch.sqrt((s.w + pad) * (s.h + pad))
            side = torch.trunc(s_z * (SEARCH_SIZE // TEMPLATE_SIZE)).long()
        else:
            pad = (s.w + s.h) * CONTEXT_AMOUNT
            s_z = torch.sqrt((s.w + pad) * (s.h + pad))
            side = torch.round(s_z * SEARCH_SIZE / TEMPLATE_SIZE).long()
        scale = TEMPLATE_SIZE / s_z

        cls, loc = self.model(s.zf, self._crops(frames, s, side, SEARCH_SIZE))
        score = torch.softmax(cls.flatten(2).to(self.dtype), dim=1)[:, 1]  # B x 256
        left, top, right, bottom = loc.flatten(2).to(self.dtype).unbind(1)
        dx = self.points_x + (right - left) / 2  # centre offsets from the crop centre, crop pixels
        dy = self.points_y + (bottom - top) / 2
        pw, ph = left + right, top + bottom

        def size(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            q = (a + b) / 2
            return torch.sqrt((a + q) * (b + q))

        def change(r: torch.Tensor) -> torch.Tensor:
            return torch.maximum(r, 1 / r)

        reference = size(s.cx, s.cy) if self.variant == "opencv" else size(s.w * scale, s.h * scale)
        scale_change = change(size(pw, ph) / reference[:, None])
        ratio_change = change((s.w / s.h)[:, None] / (pw / ph))
        penalty = torch.exp(-(ratio_change * scale_change - 1) * self.config.penalty_k)
        pscore = (
            penalty * score * (1 - self.config.window_influence) + self.window * self.config.window_influence
        )
        best = pscore.argmax(dim=1, keepdim=True)
        pick = lambda t: t.gather(1, best)[:, 0]  # noqa: E731

        lr = pick(penalty) * pick(score) * self.config.lr
        s.cx = (s.cx + pick(dx) / scale).clamp(min=0).minimum(s.img_w)
        s.cy = (s.cy + pick(dy) / scale).clamp(min=0).minimum(s.img_h)
        s.w = ((1 - lr) * s.w + lr * pick(pw) / scale).clamp(min=MIN_SIDE).minimum(s.img_w)
        s.h = ((1 - lr) * s.h + lr * pick(ph) / scale).clamp(min=MIN_SIDE).minimum(s.img_h)
        boxes = torch.stack([s.cx - s.w / 2, s.cy - s.h / 2, s.cx + s.w / 2, s.cy + s.h / 2], dim=1)
        return boxes, pick(pscore) if self.variant == "opencv" else pick(score)

    # -- public ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def track(
        self,
        videos: Sequence[Iterable[np.ndarray]],
        init_boxes: Sequence[Box | None] | None = None,
        init_detector: InitDetector | None = None,
        max_batch: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Track every video from its first frame's box; returns per video (boxes (T, 4) xyxy float32, scores (T,)).

        ``videos``: each an array (T, H, W, 3) or any iterable of RGB uint8 frames (decoded lazily, one frame per
        step). ``init_boxes[i]``: xyxy box on video i's first frame, or None to ask ``init_detector``, a callable
        taking a list of first frames and returning one xyxy box (or None) per frame - e.g. a wrapper picking the
        largest person from ``PersonDetector.detect``. At most ``max_batch`` videos are tracked at once; when one
        ends, the next waiting video takes its place. Frame 0's output is the initial box with score 1.
        ``progress`` is called with the number of frames processed in each step.
        """
        n = len(videos)
        init_boxes = list(init_boxes) if init_boxes is not None else [None] * n
        if len(init_boxes) != n:
            raise ValueError(f"got {n} videos but {len(init_boxes)} initial boxes")
        max_batch = max_batch or max(n, 1)
        iterators: dict[int, Iterator[np.ndarray]] = {}
        boxes: list[list[np.ndarray]] = [[] for _ in range(n)]
        scores: list[list[np.ndarray]] = [[] for _ in range(n)]
        pending = list(range(n))
        state: _BatchState | None = None
        while pending or state is not None:
            if state is not None:  # advance the active videos by one frame; finished ones drop out
                frames, keep = [], []
                for row, video in enumerate(state.video.tolist()):
                    frame = next(iterators[video], None)
                    if frame is None:
                        del iterators[video]
                        continue
                    frames.append(_check_frame(frame, video, len(boxes[video])))
                    keep.append(row)
                state = (
                    state.select(torch.as_tensor(keep, dtype=torch.long, device=self.device))
                    if keep
                    else None
                )
                if state is not None:
                    step_boxes, step_scores = self._step(frames, state)
                    for video, box, score in zip(
                        state.video.tolist(), step_boxes.cpu().numpy(), step_scores.cpu().numpy(), strict=True
                    ):
                        boxes[video].append(box)
                        scores[video].append(score)
                    if progress:
                        progress(len(frames))
            free = max_batch - (len(state) if state is not None else 0)
            if pending and free > 0:
                started = self._start(
                    videos, pending[:free], init_boxes, init_detector, iterators, boxes, scores
                )
                del pending[:free]
                if started is not None:
                    state = started if state is None else state.concat(started)
                if progress and started is not None:
                    progress(len(started))
        return [
            (np.asarray(b, dtype=np.float32).reshape(-1, 4), np.asarray(s, dtype=np.float32))
            for b, s in zip(boxes, scores, strict=True)
        ]

    def _start(
        self,
        videos: Sequence[Iterable[np.ndarray]],
        new: list[int],
        init_boxes: list[Box | None],
        init_detector: InitDetector | None,
        iterators: dict[int, Iterator[np.ndarray]],
        boxes: list[list[np.ndarray]],
        scores: list[list[np.ndarray]],
    ) -> _BatchState | None:
        """Read the first frame of each video in ``new``, resolve its initial box and compute its template."""
        frames, starting = [], []
        for video in new:
            iterators[video] = iter(videos[video])
            frame = next(iterators[video], None)
            if frame is None:  # an empty video yields empty outputs
                del iterators[video]
                continue
            frames.append(_check_frame(frame, video, 0))
            starting.append(video)
        if not starting:
            return None
        chosen = [init_boxes[v] for v in starting]
        missing = [i for i, box in enumerate(chosen) if box is None]
        if missing:
            if init_detector is None:
                raise ValueError(
                    f"videos {[starting[i] for i in missing]} have no initial box and no init_detector"
                )
            detected = list(init_detector([frames[i] for i in missing]))
            for i, box in zip(missing, detected, strict=True):
                if box is None:
                    raise ValueError(f"video {starting[i]}: init_detector found no target on the first frame")
                chosen[i] = box
        for video, frame, box in zip(starting, frames, chosen, strict=True):
            try:
                checked = check_init_box(box, frame.shape[1], frame.shape[0])
            except ValueError as error:
                raise ValueError(f"video {video}: {error}") from error
            boxes[video].append(checked)
            scores[video].append(np.float32(1.0))
        return self._init(frames, chosen, starting)


def check_init_box(box: Box, width: int, height: int) -> np.ndarray:
    """The xyxy box as float32 if the tracker can start from it on a ``width`` x ``height`` frame, else
    ValueError; public so that callers tracking many videos at once can refuse one bad box before the call."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"initial box {tuple(box)} is not x1 < x2, y1 < y2 (xyxy pixels)")
    if not (0 <= x1 < width and 0 <= y1 < height):
        raise ValueError(f"initial box {tuple(box)} starts outside the {width}x{height} frame")
    return np.array([x1, y1, x2, y2], np.float32)


def track_videos(
    videos: Sequence[Iterable[np.ndarray]],
    init_boxes: Sequence[Box | None] | None = None,
    *,
    init_detector: InitDetector | None = None,
    device: str = "cpu",
    variant: Variant = "repo",
    crop: CropBackend | None = None,
    weights: str | Path | None = None,
    max_batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Store-ready tracking: one (T, 5) float32 array per video, rows = x1, y1, x2, y2, score (frame t = row t).

    This is what ``aqa-extract`` writes as feature kind ``boxes`` (times = ``np.arange(T)``); provenance via
    :func:`tracker_provenance`.
    """
    tracker = NanoTracker(device=device, variant=variant, crop=crop, weights=weights)
    results = tracker.track(
        videos, init_boxes, init_detector=init_detector, max_batch=max_batch, progress=progress
    )
    return [np.concatenate([b, s[:, None]], axis=1) for b, s in results]


def tracker_provenance(
    variant: Variant = "repo", crop: CropBackend = "cv2", weights: str | Path | None = None
) -> dict:
    """Provenance attributes for the ``boxes`` feature kind."""
    from aqa_pipeline.encoders.weights import get_spec, sha256_of

    path = resolve_weights("nanotrack_v2", weights)
    config = TrackerConfig.of(variant)
    return {
        "encoder": "nanotrack_v2",
        "weights_sha256": sha256_of(path) if weights is not None else get_spec("nanotrack_v2").sha256,
        "variant": variant,
        "crop": crop,
        "penalty_k": config.penalty_k,
        "window_influence": config.window_influence,
        "lr": config.lr,
        "columns": "x1,y1,x2,y2,score",
        "dim": 5,
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) xyxy box arrays."""
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


__all__ = [
    "NanoTrackV2",
    "NanoTracker",
    "TrackerConfig",
    "box_iou",
    "check_init_box",
    "crop_cv2",
    "crop_torch",
    "load_checkpoint_state_dict",
    "nanotrack_v2",
    "track_videos",
    "tracker_provenance",
]
