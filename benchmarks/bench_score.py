"""Seconds from ``aqa-score`` start to the page, for one new video, split into decode / encode / predict / render.

The model is the Fis-V path a skating analyst would use: the weight-score decoder trained (briefly: the speed of
scoring does not depend on how well it was trained) on GDLT's released Video Swin-B features of 40 Fis-V training
videos, so ``aqa-score`` extracts Swin-B features with GDLT's recipe (32-frame tiles at the native rate, 224²).
The official Swin-B checkpoint is not available offline: a RANDOM Swin-B saved under its file name stands in (the
same network, so the same cost). The video is a real clip (walking_the_dog.mp4) resized to the asked size and
looped to the asked length. Decoding is also timed alone (the same ClipSource the extractor's workers run),
since during ``aqa-score`` it overlaps the encoder. Needs ``AQA_DATA_DIR``.

Run: ``python benchmarks/bench_score.py [--seconds 30 --size 640x360 --threads 2]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch


def make_video(source: Path, path: Path, seconds: float, size: tuple[int, int]) -> int:
    """``source`` resized to ``size`` and looped to ``seconds`` at its own frame rate; returns the frame count."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    total = round(seconds * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(total):
        writer.write(frames[i % len(frames)])
    writer.release()
    return total


def train_fisv_model(data_dir: Path, out: Path) -> Path:
    from aqa_pipeline.cli.import_features import release_provenance
    from aqa_pipeline.manifests import Manifest, load_manifest
    from aqa_pipeline.store.importer import import_npy_features
    from aqa_pipeline.train.run import FitConfig, run

    fisv = load_manifest("fis-v")
    subset = Manifest("fis-v", [row for row in fisv.rows if row.split == "train"][:40], fisv.subscore_names)
    release = data_dir / "fisv" / "swintx_avg_fps25_clip32"
    provenance = release_provenance("gdlt-vst", str(release))
    import_npy_features(subset, release, out / "fisv.h5", kind="vst", provenance=provenance, progress=False)
    options = {"epochs": 3, "d_model": 64}
    run(out / "fisv.h5", FitConfig(head="weight-score", target="tes", head_options=options, progress=False),
        out / "run")  # fmt: skip
    return out / "run"


def decode_alone(video: Path) -> tuple[float, int]:
    from aqa_pipeline.extract import jobs_from_paths
    from aqa_pipeline.extract.source import ClipSource
    from aqa_pipeline.video.presets import get_preset

    started = time.perf_counter()
    clips = sum(len(item.clips) for item in ClipSource(jobs_from_paths([video]), get_preset("gdlt")))
    return time.perf_counter() - started, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data_dir = Path(os.environ["AQA_DATA_DIR"])
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = make_video(
            data_dir / "videos" / "walking_the_dog.mp4", tmp / "programme.mp4", args.seconds, size
        )
        run_dir = train_fisv_model(data_dir, tmp)
        weights = tmp / "weights"
        weights.mkdir()
        from torchvision.models.video import swin3d_b

        torch.save(swin3d_b().state_dict(), weights / "swin_base_patch244_window877_kinetics600_22k.pth")
        os.environ["AQA_WEIGHTS_DIR"] = str(weights)
        decode_seconds, clips = decode_alone(tmp / "programme.mp4")

        from aqa_pipeline import score

        phases: dict[str, float] = {}
        started = time.perf_counter()
        (scored,) = score([tmp / "programme.mp4"], run_dir, tmp / "scored", device=args.device, progress=False,
                          on_phase=phases.__setitem__)  # fmt: skip
        total = time.perf_counter() - started
    print(f"aqa-score, one {args.seconds:.0f} s {args.size} video ({frames} frames, {clips} Swin-B clips), "
          f"{args.threads} threads, device {args.device}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"  decode alone (not overlapped)   {decode_seconds:7.1f} s")
    print(
        f"  extract (decode ∥ encode)       {phases['extract']:7.1f} s, of which in the encoder {phases['encode']:.1f} s"
    )
    print(f"  predict                         {phases['predict']:7.1f} s")
    print(f"  render (page + keyframes)       {phases['render']:7.1f} s")
    print(f"  start → page (incl. model load) {total:7.1f} s   score {scored.score:.2f}")


if __name__ == "__main__":
    main()
