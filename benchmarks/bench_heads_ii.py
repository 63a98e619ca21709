"""Training speed and peak memory of the ``gdlt`` and ``weight-score`` heads on Fis-V-sized data, one CPU thread.

Each head runs in its own subprocess (so the peak RSS is its own), trains ``--epochs`` epochs with its default
options on all training videos and prints wall and CPU seconds per epoch (CPU time is the honest figure on a shared
machine: with one thread it is what an idle core takes), the CPU time its default schedule would take (default
epochs × epoch time) and the process's peak resident memory (which includes the loaded store).

    python benchmarks/bench_heads_ii.py --store /tmp/team/fisv/features.h5      # the real Fis-V store (kind vst)
    python benchmarks/bench_heads_ii.py                                          # random data of Fis-V's shape
    python benchmarks/bench_heads_ii.py --heads weight-score --videos 96 --set d_model=null  # the code's width, scaled
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def fisv_like(n: int = 400, seed: int = 0):
    """Random (T, 1024) sequences with Fis-V's length range (124-302 clips) when no store is given."""
    from aqa_pipeline.train.data import SequenceData

    rng = np.random.default_rng(seed)
    lengths = rng.integers(124, 303, size=n)
    x = [rng.standard_normal((t, 1024)).astype(np.float32) for t in lengths]
    return SequenceData([f"v{i}" for i in range(n)], x, rng.uniform(0, 1, n).astype(np.float32))


def load_store(path: str, kind: str, target: str):
    from aqa_pipeline.store import FeatureStore
    from aqa_pipeline.train.data import SequenceData

    features = FeatureStore(path).load(kind, split="train")
    y = features.label(target)
    y = ((y - y.min()) / np.ptp(y)).astype(np.float32)
    return SequenceData(features.ids, features.features[kind], y)


def measure(
    head_name: str,
    store: str | None,
    kind: str,
    target: str,
    epochs: int,
    threads: int,
    videos: int | None,
    options: dict,
) -> dict:
    import torch

    from aqa_pipeline.heads.registry import get_head

    torch.set_num_threads(threads)
    data = load_store(store, kind, target) if store else fisv_like()
    full_size = len(data)
    if videos:  # time a subset; an epoch's cost is linear in the number of videos, so scale back up
        data = data.subset(range(min(videos, full_size)))
    head_cls = get_head(head_name)
    default_epochs = options.get("epochs", head_cls.Options().epochs)
    head = head_cls(**{**options, "epochs": epochs, "selection": "last"})
    started, cpu_started = time.perf_counter(), time.process_time()
    head.fit(data, None, seed=0, progress=False)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    started = time.perf_counter()
    head.predict(data)
    predict_seconds = time.perf_counter() - started
    scale = full_size / len(data) / epochs
    per_epoch, cpu_per_epoch = train_seconds * scale, train_cpu_seconds * scale
    return {
        "head": head_name,
        "options": options,
        "data": f"{store}:{kind}:{target}" if store else "random Fis-V-shaped",
        "videos_timed": len(data),
        "videos_per_epoch": full_size,
        "threads": threads,
        "seconds_per_epoch": round(per_epoch, 2),
        "epochs_per_second": round(1.0 / per_epoch, 4),
        # CPU time of this process: what one idle core would take, whatever else shares the machine
        "cpu_seconds_per_epoch": round(cpu_per_epoch, 2),
        "cpu_epochs_per_second": round(1.0 / cpu_per_epoch, 4),
        "default_epochs": default_epochs,
        "default_schedule_cpu_minutes": round(default_epochs * cpu_per_epoch / 60.0, 1),
        "predict_all_seconds": round(predict_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default=None, help="feature store with Fis-V (default: random data of its shape)"
    )
    parser.add_argument("--kind", default="vst")
    parser.add_argument("--target", default="tes")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to time per head")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--heads", nargs="+", default=["gdlt", "weight-score"])
    parser.add_argument("--videos", type=int, default=None, help="time on this many videos, scaled to all")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=JSON", help="head option"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: one head, JSON out
    args = parser.parse_args()
    if args.one:
        options = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.sets)}
        result = measure(
            args.heads[0], args.store, args.kind, args.target, args.epochs, args.threads, args.videos, options
        )
        print(json.dumps(result))
        return
    for head in args.heads:
        command = [
            sys.executable,
            __file__,
            "--one",
            "--heads",
            head,
            "--kind",
            args.kind,
            "--target",
            args.target,
            "--epochs",
            str(args.epochs),
            "--threads",
            str(args.threads),
        ]
        if args.store:
            command += ["--store", args.store]
        if args.videos:
            command += ["--videos", str(args.videos)]
        for item in args.sets:
            command += ["--set", item]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print("  ".join(f"{k}={v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
