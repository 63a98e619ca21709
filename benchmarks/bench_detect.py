"""Detection and static-stream throughput: YOLO11n person detection (frames/s at 640x360, batch 1 and batched) and
per-crop image encoders (crops/s at 224x224).

Models are randomly initialised from their configs (same compute as the trained ones; offline). Random weights find
nobody, so NMS, which is cheap next to the network, is not exercised. Input frames are uniform noise.
"""

from __future__ import annotations

import time

import click


def _rate(run, items: int, repeats: int) -> str:
    """Items per wall second, and per CPU second of this process (the honest figure on a shared machine)."""
    run()  # warm-up: ultralytics builds its predictor, PyTorch picks kernels
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        run()
    done = items * repeats
    return f"{done / (time.perf_counter() - wall):8.1f} /s wall, {done / (time.process_time() - cpu):8.1f} /s CPU"


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:0")
@click.option("--threads", default=1, show_default=True, help="torch CPU threads")
@click.option("--repeats", default=2, show_default=True, help="timed repetitions per measurement")
@click.option("--batch", "batch_size", default=16, show_default=True, help="the batched measurement's size")
def main(device: str, threads: int, repeats: int, batch_size: int) -> None:
    import os
    import tempfile

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
    import numpy as np
    import torch

    from aqa_pipeline.detect.crops import crop_and_resize
    from aqa_pipeline.detect.yolo import PersonDetector
    from aqa_pipeline.encoders.image import ImageEncoder

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(batch_size)]
    half = device.startswith("cuda")
    print(f"device={device} threads={threads} repeats={repeats} (random-init models, noise frames)")

    for batch in (1, batch_size):
        detector = PersonDetector.from_config("yolo11n.yaml", device=device, half=half, batch_size=batch)
        rate = _rate(lambda b=batch, d=detector: d.detect(frames[:b]), batch, repeats * max(1, 8 // batch))
        print(f"yolo11n detect 640x360  batch {batch:3d}: {rate} (frames)")

    box = np.array([200, 40, 360, 340], np.float32)
    crop_rate = _rate(lambda: [crop_and_resize(f, box) for f in frames], len(frames), repeats)
    print(f"crop + resize to 224x224:         {crop_rate} (crops)")

    crops = torch.randn(batch_size, 3, 224, 224)
    for name in ("resnet50", "mobilenet_v2"):
        encoder = ImageEncoder.random(name).to(device)
        rate = _rate(lambda e=encoder: e.encode(crops, batch_size=batch_size), batch_size, repeats)
        print(f"{name:12s} encode 224x224 batch {batch_size:3d}: {rate} (crops)")


if __name__ == "__main__":
    main()
