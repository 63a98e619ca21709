"""``--boxes`` extraction frames/s for 8 videos: NanoTrack batched across videos (``track_batch=8``) against one
video at a time (``track_batch=1``), same process, same run, same store layout.

Each configuration runs :func:`aqa_pipeline.extract.extract_features` end to end (decode, track, I3D, store) in the
main process (``workers=0``, so the tracker runs on ``--device``). The videos are 8 copies of the real
weightlifting clip under distinct names (``$AQA_DATA_DIR``), tracked from the lifter's box, or with
``--synthetic`` (or without ``$AQA_DATA_DIR``) 8 generated videos of a moving person-sized block. A small randomly
initialised I3D (64-pixel clips) keeps the encoder's share small; the row without ``--boxes`` shows that share.
Frames/s counts source frames tracked (window frames x videos) per wall-clock second; "tracking frames/s" divides
them by the seconds ``--boxes`` adds to the run without it. Run:
``python benchmarks/bench_extract_tracking.py [--help]``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.encoders.weights import resolve_weights
from aqa_pipeline.extract import VideoJob, extract_features
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.track.nanotrack import box_iou, nanotrack_v2
from aqa_pipeline.video.presets import get_preset

LIFTER = (112.0, 83.0, 192.0, 200.0)  # xyxy on frame 0 of the weightlifting clip
BLOCK = (100.0, 70.0, 150.0, 180.0)  # the synthetic block's first-frame box
PRESET = dataclasses.replace(
    get_preset("gdlt"), name="bench-tiled", clip_len=8, resize_to=64, crop_hw=(64, 64), output_hw=(64, 64)
)


def real_videos(folder: Path, count: int) -> tuple[list[Path], tuple[float, ...]]:
    data = os.environ.get("AQA_DATA_DIR")
    source = Path(data) / "videos" / "weightlifting_clean_and_jerk.mp4" if data else None
    if source is None or not source.is_file():
        return [], LIFTER
    paths = [folder / f"lift_{v}.mp4" for v in range(count)]
    for path in paths:
        path.symlink_to(source)
    return paths, LIFTER


def synthetic_videos(folder: Path, count: int, frames: int) -> tuple[list[Path], tuple[float, ...]]:
    """Textured background, a block walking right and back (a different phase per video)."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    paths = []
    for v in range(count):
        path = folder / f"synthetic_{v}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
        for t in range(frames):
            frame = background.copy()
            shift = int(40 * np.sin((t + 7 * v) / 15) - 40 * np.sin(7 * v / 15))
            frame[70:180, 100 + shift : 150 + shift] = (40, 40, 200)
            writer.write(frame)
        writer.release()
        paths.append(path)
    return paths, BLOCK


def run(jobs, store: Path, encoder, device: str, actors: ActorOptions | None) -> float:
    started = time.perf_counter()
    summary = extract_features(jobs, store, encoder=encoder, preset=PRESET, dataset="bench", batch_size=8,
                               workers=0, device=device, actors=actors, progress=False)  # fmt: skip
    if summary.failed or len(summary.done) != len(jobs):
        raise RuntimeError(f"extraction failed: {summary.failed}")
    return time.perf_counter() - started


@click.command()
@click.option("--videos", "count", default=8, show_default=True)
@click.option("--frames", default=100, show_default=True, help="frames tracked per video")
@click.option("--device", default="cpu", show_default=True, help="where the encoder and the tracker run")
@click.option("--threads", default=1, show_default=True, help="torch CPU threads")
@click.option("--synthetic", is_flag=True, help="generated videos instead of copies of the real clip")
def main(count: int, frames: int, device: str, threads: int, synthetic: bool) -> None:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths, box = ([], BLOCK) if synthetic else real_videos(folder, count)
        kind = "weightlifting clip copies"
        if not paths:
            paths, box, kind = *synthetic_videos(folder, count, frames), "synthetic"
        jobs = [VideoJob(p.stem, str(p), 0, frames - 1, {"split": "test"}) for p in paths]
        torch.manual_seed(0)
        encoder = I3DEncoder(InceptionI3d().eval(), LoadedWeights.random())
        tracker = nanotrack_v2(resolve_weights("nanotrack_v2"))
        print(f"{count} videos ({kind}) x {frames} frames, device {device}, {threads} thread(s), workers=0")
        print(f"{'configuration':<34}{'seconds':>9}{'frames/s':>10}{'speed-up':>10}{'tracking frames/s':>19}")
        plain = run(jobs, folder / "plain.h5", encoder, device, None)
        print(f"{'no --boxes (decode + I3D only)':<34}{plain:>9.1f}{count * frames / plain:>10.1f}")
        seconds, boxes = {}, {}
        for batch in (1, 8):
            actors = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=box, track_batch=batch)
            seconds[batch] = run(jobs, folder / f"b{batch}.h5", encoder, device, actors)
            boxes[batch] = FeatureStore(folder / f"b{batch}.h5").load("boxes").features["boxes"]
            label = f"--boxes --track-batch {batch}"
            speed_up, tracking = seconds[1] / seconds[batch], count * frames / (seconds[batch] - plain)
            rate = count * frames / seconds[batch]
            print(f"{label:<34}{seconds[batch]:>9.1f}{rate:>10.1f}{speed_up:>9.2f}x{tracking:>19.1f}")
        iou = min(box_iou(a[:, :4], b[:, :4]).min() for a, b in zip(boxes[1], boxes[8], strict=True))
        print(f"lowest per-frame IoU of the batched boxes against the one-at-a-time boxes: {iou:.4f}")


if __name__ == "__main__":
    main()
