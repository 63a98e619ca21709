"""The Ray engine against the local one: overhead, throughput with 1 and 2 CPU encoder actors, peak memory.

Same job list, model and clips for every run: ``--videos`` tiny synthetic videos (default 1,000 of 24 frames at
96×64), a randomly initialised Inception-I3D on 8-frame 64×64 clips (the weights do not change the speed), batches
of 4 clips. The local engine runs with 1 decoding worker and 1 torch thread; each Ray actor with 1 torch thread,
on a local Ray of ``--cpus`` CPUs started here. Peak memory is sampled every 0.2 s as the resident memory of this
process plus every process it started (DataLoader workers, Ray's raylet, GCS, workers and actors): what the
machine has to hold, not only the driver. Wall-clock numbers move with the machine's load (printed).
Run: ``python benchmarks/bench_extract_ray.py [--help]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from bench_extract import make_videos  # benchmarks/ is the script's folder, so it is on sys.path

from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.extract import extract_features, jobs_from_paths
from aqa_pipeline.extract.ray_engine import RayPlan, extract_features_ray
from aqa_pipeline.video.presets import get_preset

TINY = dataclasses.replace(
    get_preset("gdlt"), name="tiny-bench", clip_len=8, resize_to=64, crop_hw=(64, 64), output_hw=(64, 64)
)


class PeakMemory:
    """Highest summed RSS of this process and all its descendants while the block runs."""

    def __enter__(self) -> PeakMemory:
        self.peak, self.driver_peak, self._stop = 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self.driver_peak = max(self.driver_peak, me.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def encoder() -> I3DEncoder:
    torch.manual_seed(0)
    return I3DEncoder(InceptionI3d(map_endpoint="Mixed_4e").eval(), LoadedWeights.random())


def timed_run(name: str, run) -> dict:
    started = time.perf_counter()
    with PeakMemory() as memory:
        summary = run()
    seconds = time.perf_counter() - started
    return {
        "engine": name,
        "videos": len(summary.done),
        "seconds": seconds,
        "videos_per_s": len(summary.done) / seconds,
        "clips_per_s": summary.clips / seconds,
        "peak_mib": memory.peak / 2**20,
        "driver_peak_mib": memory.driver_peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=24, help="frames per synthetic video")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ray

    folder = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        paths = make_videos(folder, args.videos, args.frames, 96, 64)
        jobs = jobs_from_paths(paths)
        common = {"preset": TINY, "dataset": "synthetic", "progress": False, "batch_size": 4}
        rows = [
            timed_run(
                "local (1 worker, 1 thread)",
                lambda: extract_features(
                    jobs, folder / "local.h5", encoder=encoder(), **common, workers=1, device="cpu"
                ),
            )
        ]
        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        for actors in (1, 2):
            # the actors' CPUs plus half a CPU per decoding task fit the local Ray's CPUs
            plan = RayPlan(
                actors=actors, cpus_per_actor=min(1.0, (args.cpus - 0.5) / actors), decode_cpus=0.5
            )
            store = folder / f"ray{actors}.h5"
            rows.append(
                timed_run(
                    f"ray, {actors} CPU actor{'s' * (actors > 1)}",
                    lambda store=store, plan=plan: extract_features_ray(
                        jobs, store, encoder=encoder(), **common, plan=plan
                    ),
                )
            )
        ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"{args.videos} videos of {args.frames} frames, 8-frame 64x64 clips; Ray start {ray_start:.1f} s; load {load:.1f}"
    )
    print("| engine | videos | seconds | videos/s | clips/s | peak MiB (all processes) | driver peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['engine']} | {row['videos']} | {row['seconds']:.1f} | {row['videos_per_s']:.1f} | "
            f"{row['clips_per_s']:.1f} | {row['peak_mib']:.0f} | {row['driver_peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
