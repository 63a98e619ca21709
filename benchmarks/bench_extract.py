"""CPU clips/s of the batched extractor vs a naive loop (decode one video, run it, next), same model and input.

Synthetic videos are generated into a temporary folder with cv2.VideoWriter (textured, moving, so the decoder has
real work), and both pipelines encode identical clips with the same randomly initialised Inception-I3D (weights
do not change the speed). The naive loop is what the papers' scripts and video_features do: decode and transform
in the main process, then one forward pass per video. Run: ``python benchmarks/bench_extract.py [--help]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aqa_pipeline.encoders.i3d import InceptionI3d
from aqa_pipeline.extract import extract_features, jobs_from_paths
from aqa_pipeline.video.decode import open_video, read_frames
from aqa_pipeline.video.presets import get_preset


def make_videos(folder: Path, count: int, frames: int, width: int, height: int) -> list[Path]:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    paths = []
    for v in range(count):
        path = folder / f"synthetic_{v:03d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
        for i in range(frames):
            shift = (3 * i + 17 * v) % width
            writer.write(np.ascontiguousarray(texture[:, shift : shift + width]))
        writer.release()
        paths.append(path)
    return paths


def naive(paths, model, preset, channels_last: bool = False, device: str = "cpu") -> int:
    """Per video: decode all frames, transform, one fp32 forward pass over its clips; nothing overlaps."""
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1, 1) * 255 for v in preset.mean_std)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    clips_done = 0
    for path in paths:
        reader = open_video(path)
        plan = preset.plan(len(reader), float(reader.get_avg_fps()))
        frames = read_frames(path, plan.frame_indices, reader)
        frames = np.stack([preset.transform_frame(f) for f in frames])
        clips = torch.from_numpy(frames[np.asarray(plan.clip_starts)[:, None] + np.arange(plan.clip_len)])
        clips = clips.to(device)
        with torch.inference_mode():
            model(
                ((clips.permute(0, 4, 1, 2, 3).float() - mean) / std).contiguous(memory_format=memory_format)
            )
            if device != "cpu":
                torch.cuda.synchronize()
        clips_done += len(clips)
    return clips_done


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the DataLoader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=64, help="frames per synthetic video")
    parser.add_argument("--size", default="640x360", help="source resolution WxH")
    parser.add_argument("--input", type=int, default=112, help="I3D input side (224 = the papers', slower)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the model in both pipelines (more than the free cores inflates the naive loop's "
        "time through thread contention on a shared machine)",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda:N (the batched run uses autocast on GPU)"
    )
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    side = args.input
    preset = dataclasses.replace(
        get_preset("gdlt"),
        name="bench",
        clip_len=16,
        resize_to=side + side // 7,
        crop_hw=(side, side),
        output_hw=(side, side),
    )
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.frames, width, height)
        torch.set_num_threads(args.threads)
        naive(paths[:1], model, preset, device=args.device)  # warm-up (allocator, oneDNN kernels)

        start = time.perf_counter()
        decode_frames = sum(len(read_frames(p, range(args.frames))) for p in paths)
        decode_s = time.perf_counter() - start

        start, cpu = time.perf_counter(), cpu_seconds()
        naive_clips = naive(paths, model, preset, device=args.device)
        naive_s, naive_cpu = time.perf_counter() - start, cpu_seconds() - cpu

        start = time.perf_counter()
        naive(paths, model, preset, channels_last=True, device=args.device)
        naive_cl_s = time.perf_counter() - start

        torch.set_num_threads(max(1, args.threads - args.workers) if args.workers else args.threads)
        cpu = cpu_seconds()
        summary = extract_features(
            jobs_from_paths(paths),
            Path(tmp) / "bench.h5",
            model=model,
            preset=preset,
            dataset="bench",
            weights_sha256=None,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            progress=False,
        )
        batched_cpu = cpu_seconds() - cpu
        assert summary.clips == naive_clips and not summary.failed
    naive_rate, batched_rate = naive_clips / naive_s, summary.clips / summary.seconds
    print(
        f"machine: {torch.get_num_threads()} model threads in batched run, {args.workers} decode workers; "
        f"{args.videos} videos x {args.frames} frames at {width}x{height}, I3D input 16x{side}x{side}"
    )
    print(f"decode only (decord, main process): {decode_frames / decode_s:8.1f} frames/s")
    print(f"naive loop   : {naive_clips} clips in {naive_s:6.2f} s = {naive_rate:6.2f} clips/s")
    print(
        f"naive + channels-last: {naive_cl_s:6.2f} s = {naive_clips / naive_cl_s:6.2f} clips/s "
        "(what the memory format alone gives)"
    )
    print(
        f"batched      : {summary.clips} clips in {summary.seconds:6.2f} s = {batched_rate:6.2f} clips/s "
        f"(batch {args.batch_size}, store writing included)"
    )
    print(f"speed-up     : {batched_rate / naive_rate:.2f}x wall clock")
    print(
        f"CPU time/clip: naive {naive_cpu / naive_clips:.2f} s, batched {batched_cpu / summary.clips:.2f} s "
        f"({naive_cpu / batched_cpu:.2f}x less; unlike wall clock, barely affected by other load on the machine)"
    )


if __name__ == "__main__":
    main()
