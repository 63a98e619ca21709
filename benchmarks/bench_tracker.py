"""Tracker throughput: NanoTrack V2 (PyTorch) video-frames per second at batch 1, 8 and 64, and cv2.TrackerNano.

Uses the real weightlifting clip (``$AQA_DATA_DIR``) repeated as many times as the batch needs, or synthetic moving-
square frames with ``--synthetic``. Frames/s counts video-frames: a step of a batch of 8 videos is 8 frames.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np


def _real_clip(n_frames: int) -> list[np.ndarray]:
    import cv2

    data = os.environ.get("AQA_DATA_DIR")
    if not data:
        raise click.UsageError("AQA_DATA_DIR is unset; pass --synthetic or point it at the shared data")
    capture = cv2.VideoCapture(str(Path(data) / "videos/weightlifting_clean_and_jerk.mp4"))
    frames = []
    while len(frames) < n_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame[..., ::-1]))
    return frames


def _synthetic_clip(n_frames: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    frames = []
    for t in range(n_frames):
        frame = background.copy()
        frame[80 : 80 + 100, 100 + t % 60 : 180 + t % 60] = (200, 40, 40)
        frames.append(frame)
    return frames


@click.command()
@click.option("--frames", default=40, show_default=True, help="frames per video")
@click.option("--batches", default="1,8,64", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--variant", type=click.Choice(["repo", "opencv"]), default="repo", show_default=True)
@click.option(
    "--crop", type=click.Choice(["cv2", "torch"]), default=None, help="default: cv2 on CPU, torch on GPU"
)
@click.option("--threads", default=1, show_default=True, help="torch/cv2 CPU threads")
@click.option("--synthetic", is_flag=True, help="synthetic frames instead of the real clip")
@click.option("--opencv/--no-opencv", "with_opencv", default=True, help="also time cv2.TrackerNano")
def main(frames, batches, device, variant, crop, threads, synthetic, with_opencv):
    import cv2
    import torch

    from aqa_pipeline.encoders.weights import resolve_weights
    from aqa_pipeline.track.nanotrack import NanoTracker

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    clip = _synthetic_clip(frames) if synthetic else _real_clip(frames)
    box = (112, 83, 192, 200)  # the lifter on frame 0 (see tests/test_nanotrack.py); fine for the square too
    tracker = NanoTracker(device=device, variant=variant, crop=crop)
    tracker.track([clip[:3]], [box])  # warm-up
    print(
        f"clip {len(clip)} frames {'synthetic' if synthetic else 'real'}, device {device}, variant {variant}, "
        f"crop {tracker.crop}, {threads} thread(s)"
    )
    for batch in (int(b) for b in batches.split(",")):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        tracker.track([clip] * batch, [box] * batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(
            f"torch NanoTrack batch {batch:3d}: {batch * len(clip) / elapsed:8.1f} frames/s ({elapsed:.2f} s)"
        )
    if with_opencv:
        params = cv2.TrackerNano_Params()
        params.backbone = str(resolve_weights("nanotrack_v2_backbone_onnx"))
        params.neckhead = str(resolve_weights("nanotrack_v2_head_onnx"))
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in clip]
        reference = cv2.TrackerNano_create(params)
        start = time.perf_counter()
        reference.init(bgr[0], (box[0], box[1], box[2] - box[0], box[3] - box[1]))
        for frame in bgr[1:]:
            reference.update(frame)
        elapsed = time.perf_counter() - start
        print(f"cv2.TrackerNano   batch   1: {len(bgr) / elapsed:8.1f} frames/s ({elapsed:.2f} s)")


if __name__ == "__main__":
    main()
