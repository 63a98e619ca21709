"""Stage-two speed: one fit of each baseline head on the 400 Fis-V training videos (TES), wall time and peak RSS.

Targets (issue 3, 2 CPU cores): svr under 10 s; mlp and lstm under 60 s each.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fisv_store import import_fisv_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", default="svr,ridge,mlp,lstm,bilstm,usdl")
    parser.add_argument(
        "--store", default=None, help="an existing Fis-V store (default: import into a temp dir)"
    )
    args = parser.parse_args()
    data = os.environ.get("AQA_DATA_DIR")
    if args.store is None and not data:
        print("bench_fit: AQA_DATA_DIR is unset; skipping (needs fisv/)")
        return
    import torch

    from aqa_pipeline.heads.registry import get_head
    from aqa_pipeline.store import FeatureStore
    from aqa_pipeline.train.data import SequenceData
    from aqa_pipeline.train.labels import LabelTransform

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or import_fisv_store(Path(tmp))
        loaded = FeatureStore(store).load("vst", split="train", dtype=np.float32)
        scores = loaded.label("tes")
        y = LabelTransform.fit(scores, None, mode="minmax", use_dd=False).forward(scores, None)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(loaded))
        val, fit = order[:60], order[60:]
        everything = SequenceData(ids=loaded.ids, x=loaded.features["vst"], y=y)
        print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
        for name in args.heads.split(","):
            head = get_head(name)()
            started = time.perf_counter()
            history = head.fit(
                everything.subset(fit),
                everything.subset(val) if head.uses_validation else None,
                seed=0,
                progress=False,
            )
            seconds = time.perf_counter() - started
            epochs = len(history.train_loss)
            rate = f", {epochs / seconds:.2f} epochs/s over {epochs} epochs" if epochs else ""
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{name:8s} fit on {len(fit)} videos: {seconds:6.1f} s{rate}; peak RSS so far {peak:.0f} MiB"
            )


if __name__ == "__main__":
    sys.exit(main())
