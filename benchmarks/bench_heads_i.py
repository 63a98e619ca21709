"""Training speed of the tpt, core and action-net heads on Fis-V-sized data, single-threaded by default.

Reads the Fis-V store when it exists (``--store``, default /tmp/team/fisv/features.h5, kind ``vst``, target
``tes``), else synthetic videos of the same shape (400 × T∈[124, 302] × 1024). Trains each head with its default
configuration for ``--epochs`` epochs (validation every epoch on a 15% carve, as ``aqa-fit`` does) and prints
seconds per epoch, epochs/s and the projected time of the head's full default schedule.

    python benchmarks/bench_heads_i.py --heads tpt,core,action-net --epochs 3 --threads 1
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np


def fisv_like(store: Path, target: str):
    from aqa_pipeline.train.data import SequenceData

    if store.exists():
        from aqa_pipeline.store import FeatureStore

        data = FeatureStore(store).load("vst", split="train", dtype=np.float32)
        y = data.label(target)
        source = f"{store} (vst, {target})"
        x = data.features["vst"]
        ids = list(data.ids)
    else:
        rng = np.random.default_rng(0)
        x = [rng.standard_normal((int(rng.integers(124, 303)), 1024)).astype(np.float32) for _ in range(400)]
        y = rng.uniform(size=400)
        ids = [f"synthetic_{i:03d}" for i in range(400)]
        source = "synthetic Fis-V-shaped data (store not found)"
    y = (y - y.min()) / np.ptp(y)
    return SequenceData(ids=ids, x=x, y=y.astype(np.float32)), source


@click.command()
@click.option("--store", type=click.Path(path_type=Path), default=Path("/tmp/team/fisv/features.h5"))
@click.option("--target", default="tes")
@click.option("--heads", default="tpt,core,action-net")
@click.option("--epochs", default=3, help="Epochs to time (the projection scales to the default schedule).")
@click.option("--threads", default=1)
@click.option(
    "--set", "options", multiple=True, help="HEAD.KEY=VALUE option override, e.g. tpt.segments=None"
)
def main(store: Path, target: str, heads: str, epochs: int, threads: int, options: tuple[str, ...]) -> None:
    import json

    import torch

    from aqa_pipeline.heads.registry import get_head

    torch.set_num_threads(threads)
    data, source = fisv_like(store, target)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    n_val = int(round(0.15 * len(data)))
    train, val = data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))
    print(
        f"data: {source}; {len(train)} train / {len(val)} val videos, T {data.lengths().min()}-"
        f"{data.lengths().max()}, {threads} thread(s)"
    )
    for name in heads.split(","):
        overrides = {}
        for option in options:
            key, value = option.split("=", 1)
            head_name, key = key.split(".", 1)
            if head_name == name:
                overrides[key] = json.loads(value) if value not in ("None", "none") else None
        head_cls = get_head(name)
        resolved = head_cls.parse_options(overrides)
        full_epochs, eval_every = resolved.epochs, resolved.eval_every
        head_cls(**{**overrides, "epochs": 1}).fit(
            train.subset(range(20)), val, progress=False
        )  # warm-up: imports
        costs = {}
        for n in (eval_every, eval_every + epochs):  # the difference is the marginal cost of `epochs` epochs
            head = head_cls(**{**overrides, "epochs": n})
            wall, cpu = time.perf_counter(), time.process_time()
            history = head.fit(train, val, seed=0, progress=False)
            costs[n] = (time.perf_counter() - wall, time.process_time() - cpu)
        wall = (costs[eval_every + epochs][0] - costs[eval_every][0]) / epochs
        cpu = (costs[eval_every + epochs][1] - costs[eval_every][1]) / epochs
        setup = costs[eval_every][0] - eval_every * wall
        print(
            f"{name:11s} {cpu:6.2f} CPU-s/epoch ({wall:6.2f} wall-s)  {1 / cpu:6.2f} epochs/CPU-s  setup {setup:5.1f} s"
            f"  default {full_epochs} epochs -> {(setup + cpu * full_epochs) / 60:5.1f} CPU-min"
            f"  (val rho after {eval_every + epochs}: {history.val_spearman[-1]:.3f})  {overrides or ''}"
        )


if __name__ == "__main__":
    main()
