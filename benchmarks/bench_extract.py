"""CPU clips/s of the batched extractor vs two serial baselines, same model and clips.

Baselines, both one video at a time with nothing overlapping:

* (a) ``serial, same preprocessing``: our own decoding (decord, uint8, cv2 resize at the working resolution) and
  our normalisation, then one forward pass over the video's clips. Isolates what batching across videos and
  overlapping decode with the model buy.
* (b) ``research-repo loop``: what users run today (video_features' I3D extractor, the AQA repos' scripts): every
  frame read with ``cv2.VideoCapture`` in the main process, BGR→RGB, per-frame PIL resize and centre crop, per-frame
  float tensor and normalisation, all clips of the video in one fp32 forward in contiguous memory format under
  ``torch.no_grad``.

Synthetic videos are generated into a temporary folder with cv2.VideoWriter (textured, moving, so the decoder has
real work); every pipeline encodes the same clips with the same randomly initialised Inception-I3D (weights do not
change the speed). Wall-clock numbers on a shared machine move with its load (printed); CPU seconds per clip
(process + worker children) move much less. Run: ``python benchmarks/bench_extract.py [--help]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.extract import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, extract_features, jobs_from_paths
from aqa_pipeline.extract.source import ClipSource
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
    """Baseline (a). Per video: decode its frames, transform, one fp32 forward pass over its clips."""
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


def research_loop(paths, model, preset, device: str = "cpu") -> int:
    """Baseline (b): the research-repo loop (cv2 frame by frame, PIL transforms, per-frame float tensors)."""
    from PIL import Image

    mean = torch.tensor(preset.mean_std[0]).view(3, 1, 1)
    std = torch.tensor(preset.mean_std[1]).view(3, 1, 1)
    crop_h, crop_w = preset.crop_hw
    model = model.to(memory_format=torch.contiguous_format)
    clips_done = 0
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            scale = preset.resize_to / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
            left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
            image = image.crop((left, top, left + crop_w, top + crop_h))
            tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
            frames.append((tensor - mean) / std)
        capture.release()
        plan = preset.plan(len(frames), 25.0)
        video = torch.stack([frames[i] for i in plan.frame_indices], dim=1)  # (3, T, H, W)
        clips = torch.stack([video[:, s : s + plan.clip_len] for s in plan.clip_starts])
        with torch.no_grad():
            model(clips.to(device))
            if device != "cpu":
                torch.cuda.synchronize()
        clips_done += len(clips)
    return clips_done


def decode_only(paths, preset, workers: int) -> int:
    """The decode-bound ceiling: the batched extractor's own decoding workers with no model behind them."""
    loader = DataLoader(
        ClipSource(jobs_from_paths(paths), preset),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    return sum(len(item["clips"]) for item in loader)


@contextmanager
def gpu_utilisation(device: str):
    """Samples ``nvidia-smi`` every 100 ms while the block runs; yields a list that gets the percentages."""
    samples: list[float] = []
    if not device.startswith("cuda") or shutil.which("nvidia-smi") is None:
        yield samples
        return
    index = torch.device(device).index or 0
    command = ["nvidia-smi", "-i", str(index), "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    sampler = subprocess.Popen([*command, "-lms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        yield samples
    finally:
        sampler.terminate()
        output, _ = sampler.communicate()
        samples.extend(float(line) for line in output.split() if line.strip().isdigit())


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the DataLoader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(function, *args, **kwargs) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds incl. finished child processes)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=64, help="frames per synthetic video")
    parser.add_argument("--size", default="640x360", help="source resolution WxH")
    parser.add_argument("--input", type=int, default=112, help="I3D input side (224 = the papers', slower)")
    parser.add_argument("--batch-size", type=int, help="default: aqa-extract's (4 on CPU, 64 on GPU)")
    parser.add_argument(
        "--workers", type=int, help="decoding workers; default: aqa-extract's (1 on CPU, 4 on GPU)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for the model, in every pipeline (default: all cores, as a plain loop and "
        "aqa-extract use them). Run it on an otherwise idle machine: other load inflates every time.",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda:N (the batched run uses autocast on GPU)"
    )
    args = parser.parse_args()
    device_type = torch.device(args.device).type
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE[device_type]
    args.workers = DEFAULT_WORKERS[device_type] if args.workers is None else args.workers
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
    torch.set_num_threads(args.threads)

    encoder = I3DEncoder(model, LoadedWeights.random())

    def batched(paths, store: Path):
        return extract_features(
            jobs_from_paths(paths),
            store,
            encoder=encoder,
            preset=preset,
            dataset="bench",
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            progress=False,
        )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.frames, width, height)
        # warm-up: allocator and oneDNN kernels for every batch shape each pipeline will use
        naive(paths[:2], model, preset, device=args.device)
        naive(paths[:2], model, preset, channels_last=True, device=args.device)
        batched(paths[: 2 * args.batch_size], Path(tmp) / "warm-up.h5")

        start = time.perf_counter()
        decode_frames = sum(len(read_frames(p, range(args.frames))) for p in paths)
        decode_s = time.perf_counter() - start

        clips, wall, cpu = timed(research_loop, paths, model, preset, args.device)
        rows.append(("(b) research-repo loop (cv2 + PIL per frame, contiguous)", clips, wall, cpu))
        clips, wall, cpu = timed(naive, paths, model, preset, device=args.device)
        rows.append(("(a) serial, same preprocessing (contiguous)", clips, wall, cpu))
        clips, serial_wall, cpu = timed(naive, paths, model, preset, channels_last=True, device=args.device)
        rows.append(("(a') serial, same preprocessing, channels-last", clips, serial_wall, cpu))
        decoded, decode_wall, _ = timed(decode_only, paths, preset, args.workers)
        with gpu_utilisation(args.device) as utilisation:
            summary, wall, cpu = timed(batched, paths, Path(tmp) / "bench.h5")
        assert summary.clips == clips == decoded and not summary.failed
        rows.append(
            (
                f"batched ({args.workers} workers, batch {args.batch_size}, store writes)",
                summary.clips,
                wall,
                cpu,
            )
        )
    print(
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
        f"{args.videos} videos x {args.frames} frames at {width}x{height}, I3D input 16x{side}x{side}; "
        f"{args.threads} model threads in every pipeline"
    )
    decode_share = decode_s / serial_wall  # the pipelines decode exactly these frames
    print(
        f"decode only (decord, main process): {decode_frames / decode_s:8.1f} frames/s = "
        f"{decode_share:.0%} of the serial channels-last time, so hiding all decoding behind the model "
        f"can speed it up at most {1 / max(1 - decode_share, 1e-9):.2f}x"
    )
    print(
        f"decode only through the extractor's {args.workers} worker(s), no model: "
        f"{decoded / decode_wall:8.2f} clips/s (the decode-bound ceiling of the batched run)"
    )
    if utilisation:
        print(
            f"GPU utilisation during the batched run (nvidia-smi every 100 ms, {len(utilisation)} samples): "
            f"mean {np.mean(utilisation):.0f}%, median {np.median(utilisation):.0f}%"
        )
    batched_rate = rows[-1][1] / rows[-1][2]
    batched_cpu = rows[-1][3] / rows[-1][1]
    print(f"{'pipeline':62s} {'clips/s':>8s} {'CPU s/clip':>10s} {'batched speed-up':>17s}")
    for name, count, wall, cpu in rows:
        rate = count / wall
        print(
            f"{name:62s} {rate:8.2f} {cpu / count:10.2f} "
            f"{batched_rate / rate:7.2f}x wall {cpu / count / batched_cpu:5.2f}x CPU"
        )


if __name__ == "__main__":
    main()
