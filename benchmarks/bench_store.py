"""Store benchmark: import time of the 400 released Fis-V feature files, and warm load time into memory."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aqa_pipeline.manifests import load_manifest
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.store.importer import import_npy_features


def main() -> None:
    data = os.environ.get("AQA_DATA_DIR")
    if not data:
        print("bench_store: AQA_DATA_DIR is unset; skipping (needs fisv/swintx_avg_fps25_clip32)")
        return
    folder = Path(data) / "fisv" / "swintx_avg_fps25_clip32"
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "fisv.h5"
        started = time.perf_counter()
        report = import_npy_features(
            load_manifest("fis-v"),
            folder,
            store,
            kind="vst",
            splits=("train",),
            provenance={"encoder": "vst", "dim": 1024},
            progress=False,
        )
        print(f"import: {len(report.imported)} videos in {time.perf_counter() - started:.2f} s")
        FeatureStore(store).load("vst", split="train")  # warm the page cache
        for dtype, label in ((None, "stored float16"), (np.float32, "as float32")):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                loaded = FeatureStore(store).load("vst", split="train", dtype=dtype)
                times.append(time.perf_counter() - started)
            clips = int(sum(len(x) for x in loaded.features["vst"]))
            print(
                f"warm load (open index + {len(loaded)} videos, {clips} clips, {label}): "
                f"median {np.median(times):.3f} s, best {min(times):.3f} s"
            )


if __name__ == "__main__":
    sys.exit(main())
