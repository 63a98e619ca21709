"""CPU-seconds per training epoch of each neural head on one cross-validation fold of Fis-V, as aqa-fit trains it.

A fold's shape: 272 training videos and 48 validation videos (5-fold CV of the 400 training videos, 15% carved
for epoch selection), the validation videos scored after every epoch. Each head fits at its defaults (plus
``--set``) for ``--epochs`` epochs; its cost is the fit's CPU time over the epochs, set-up and validation
included. To compare two revisions on the same machine, run this file with ``PYTHONPATH`` set to each checkout.

    python benchmarks/bench_epoch_cost.py --heads tpt,gdlt,weight-score --epochs 4
    python benchmarks/bench_epoch_cost.py --heads weight-score --set d_model=null --epochs 1
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from fisv_store import import_fisv_store


def fold_shaped(store: Path, target: str):
    """(train, val): 272 and 48 of the 400 training videos, labels min-max scaled."""
    from aqa_pipeline.store import FeatureStore
    from aqa_pipeline.train.data import SequenceData

    data = FeatureStore(store).load("vst", split="train", dtype=np.float32)
    y = data.label(target)
    videos = SequenceData(
        ids=list(data.ids), x=data.features["vst"], y=((y - y.min()) / np.ptp(y)).astype(np.float32)
    )
    order = np.random.default_rng(0).permutation(len(videos))
    return videos.subset(np.sort(order[:272])), videos.subset(np.sort(order[272:320]))


@click.command()
@click.option("--store", type=click.Path(exists=True, path_type=Path), help="Fis-V store (default: imported)")
@click.option("--heads", default="tpt,core,action-net,gdlt,weight-score")
@click.option("--epochs", default=4, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--target", default="tes", show_default=True)
@click.option("--set", "settings", multiple=True, help="KEY=JSON option for every head, e.g. d_model=null")
def main(store: Path | None, heads: str, epochs: int, threads: int, target: str, settings: tuple[str, ...]):
    import torch

    from aqa_pipeline.heads.registry import get_head

    torch.set_num_threads(threads)
    options = {key: json.loads(value) for key, value in (s.split("=", 1) for s in settings)}
    with tempfile.TemporaryDirectory() as scratch:
        store = store or import_fisv_store(Path(scratch))
        if store is None:
            raise click.ClickException("no Fis-V store: pass --store or set AQA_DATA_DIR")
        train, val = fold_shaped(store, target)
    for name in heads.split(","):
        head = get_head(name)(**{**options, "epochs": epochs})
        cpu = time.process_time()
        head.fit(train, val, seed=0, progress=False)
        cost = (time.process_time() - cpu) / epochs
        print(
            f"{name:13s} {cost:7.2f} CPU-s per epoch ({epochs} epochs, {threads} thread(s)) {options or ''}"
        )


if __name__ == "__main__":
    main()
