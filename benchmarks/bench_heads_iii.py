"""Heads III (TSA / NL-Net, FSPN): attention cost on real-shaped maps and training time per epoch.

Prints measured numbers only. What is measured, exactly:

1. TSA vs dense non-local cost on one MTL-AQA-shaped video (10 clips × MaxPool3d_4a maps, 480 × 4 × 14 × 14 per
   clip): analytic FLOPs (``tsa_flops``) for a tube from a synthetic diver track rasterised by
   ``aqa_pipeline.track.tubes`` on a 640 × 360 frame, plus the measured forward wall time of one block each.
2. Training time per epoch for an MTL-AQA-sized training set (1059 videos × 10 clips): a real epoch would need
   ~16 GB of mid-level maps (or ~2 GB of light maps), so each configuration trains on ``--videos`` synthetic videos
   of the real shape for a few batches and the per-video time is scaled to 1059 videos (printed as such).

Run: ``python benchmarks/bench_heads_iii.py [--threads 1] [--videos 16] [--skip-mid]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.heads.tsa import TubeSelfAttention, tsa_flops
from aqa_pipeline.train.data import SequenceData

MTL_TRAIN_VIDEOS = 1059
CLIPS = 10  # MTL-AQA: 10 clips × 16 frames over 103 frames (USDL/CoRe layout)


def diver_tube(clips: int = CLIPS, seed: int = 0) -> np.ndarray:
    """(clips, 4, 14, 14) tube of a ~70×150 px diver falling across a 640×360 frame (TSA-Net's full-frame geometry)."""
    from aqa_pipeline.track.tubes import tube_masks

    rng = np.random.default_rng(seed)
    frames = clips * 16
    y = np.linspace(20, 200, frames) + rng.normal(0, 2, frames)
    x = 300 + 20 * np.sin(np.linspace(0, 3, frames))
    boxes = np.stack([x, y, x + 70, y + 150], axis=1)
    masks = tube_masks(boxes, (640, 360), clip_starts=list(range(0, frames, 16)))
    return masks.reshape(clips, 4, 14, 14)


def attention_cost(threads: int) -> None:
    tube = diver_tube()
    print(f"\n== TSA vs dense non-local, one video: {CLIPS} clips × 480×4×14×14 (MaxPool3d_4a_3x3) ==")
    print(
        f"tube: {int(tube.sum())} of {tube.size} positions ({tube.mean():.1%}); synthetic 70×150 px diver, 640×360"
    )
    for form in ("paper", "code"):
        cost = tsa_flops(tube, 480, 240, blocks=1, form=form)
        print(
            f"form={form:5s}  TSA {cost['tsa_flops'] / 1e9:8.2f} GFLOPs   dense NL {cost['dense_flops'] / 1e9:8.2f} "
            f"GFLOPs   ratio {cost['ratio']:.3f}  (per block; ×N for N stacked blocks)"
        )
    torch.manual_seed(0)
    x = torch.randn(1, tube.size, 480)  # (CPU seconds: this process's compute, fair on a shared machine)
    select_tube = torch.from_numpy(tube.reshape(1, -1))
    select_all = torch.ones_like(select_tube)
    for form in ("paper", "code"):
        block = TubeSelfAttention(480, 240, form).eval()
        for label, select in (("TSA", select_tube), ("dense NL", select_all)):
            with torch.no_grad():
                started = time.process_time()
                block(x, select)
                seconds = time.process_time() - started
            print(
                f"form={form:5s}  {label:8s} forward {seconds * 1000:9.1f} CPU-ms  ({threads} thread(s), 1 run)"
            )


def _maps_data(videos: int, channels: int, grid: tuple[int, ...], seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    tube = diver_tube()
    maps = [rng.standard_normal((CLIPS, channels, *grid), dtype=np.float32) for _ in range(videos)]
    return SequenceData(
        ids=[f"v{i}" for i in range(videos)],
        x=maps,
        y=rng.uniform(size=videos).astype(np.float32),
        extra={"tube": [tube.astype(np.float32)] * videos},
    )


def _clip_data(videos: int, dim: int = 1024, seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    return SequenceData(
        ids=[f"v{i}" for i in range(videos)],
        x=[rng.standard_normal((CLIPS, dim), dtype=np.float32) for _ in range(videos)],
        y=rng.uniform(size=videos).astype(np.float32),
        extra={"actor": [rng.standard_normal((CLIPS, dim), dtype=np.float32) for _ in range(videos)]},
    )


def _time_epoch(name: str, data: SequenceData, config: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one training epoch over ``data``, excluding model construction.

    CPU time is what this process computed: on a shared machine it is the fairer number (wall time includes
    waiting for the cores), and with one thread it is what an idle core would take."""
    head = get_head(name)(epochs=1, selection="last", **config)
    generator = torch.Generator().manual_seed(0)
    head.train_data, head.device = data, torch.device("cpu")
    head.prepare(data, generator)
    model = head.build(data)
    head.model = model
    optimizer, _ = head.configure_optimizer(model)
    model.train()
    batches = list(
        head.batcher(data).iterate(batch_size=head.options.batch_size, train=True, generator=generator)
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in batches:
        loss, _ = head.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started, time.process_time() - cpu_started


def training_time(videos: int, skip_mid: bool) -> None:
    print(f"\n== training time per epoch, MTL-AQA-sized ({MTL_TRAIN_VIDEOS} train videos × {CLIPS} clips) ==")
    print(f"measured on {videos} synthetic videos of the real shape, scaled to {MTL_TRAIN_VIDEOS}")
    runs = [
        ("tsa", "light: Mixed_5c 1024×7×7/clip", _maps_data(videos, 1024, (7, 7)),
         {"variant": "light", "output": "usdl"}),
        ("nl-net", "light: Mixed_5c 1024×7×7/clip", _maps_data(videos, 1024, (7, 7)),
         {"variant": "light", "output": "usdl"}),
        ("fspn", "FSPN-S, 1024-d scene + actor", _clip_data(videos), {"size": "small", "n_exemplars": 10}),
        ("fspn", "FSPN, 1024-d scene + actor", _clip_data(videos), {"size": "full", "n_exemplars": 10}),
    ]  # fmt: skip
    if not skip_mid:
        mid = _maps_data(min(videos, 2), 480, (4, 14, 14))
        for finetune in (False, True):
            label = (
                f"mid: 480×4×14×14/clip + I3D tail ({'fine-tuned' if finetune else 'frozen'}, random init)"
            )
            config = {"variant": "mid", "output": "usdl", "i3d_weights": None, "finetune_i3d": finetune}
            runs.append(("tsa", label, mid, config))
    for name, label, data, config in runs:
        wall, cpu = _time_epoch(name, data, config)
        per_video = cpu / len(data)
        print(
            f"{name:6s} {label:66s} {per_video * 1000:8.1f} CPU-ms/video → {per_video * MTL_TRAIN_VIDEOS / 60:6.1f} "
            f"min/epoch  (measured on {len(data)} videos: {cpu:.1f} s CPU, {wall:.1f} s wall)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the machine is shared: default 1)"
    )
    parser.add_argument("--videos", type=int, default=16, help="synthetic videos per timed configuration")
    parser.add_argument(
        "--skip-mid", action="store_true", help="skip the (slow) mid-level maps + I3D tail timing"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    attention_cost(args.threads)
    training_time(args.videos, args.skip_mid)


if __name__ == "__main__":
    main()
