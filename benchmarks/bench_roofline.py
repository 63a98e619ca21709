"""How close each neural head's training epoch runs to this machine's matrix-multiply peak.

For each head configuration: the floating-point work of one training epoch on Fis-V-shaped data (counted by
``torch.utils.flop_counter`` over a real ``fit`` of one epoch, validation included), the seconds that epoch takes
(a second, uncounted fit), the GFLOP/s that makes, and that as a share of the float32 GEMM peak measured here at
the same thread count. Work divided by peak is the fastest any implementation of the same computation can run
an epoch on these cores; a published s/epoch below it was not the same work on the same kind of machine.

    python benchmarks/bench_roofline.py --threads 2             # every configuration, 400 videos
    python benchmarks/bench_roofline.py --configs weight-score-paper --videos 80
"""

from __future__ import annotations

import time

import click
import numpy as np

# name → (head, options): the defaults, and the code's widths where they differ from ours
CONFIGS = {
    "tpt": ("tpt", {}),
    "core": ("core", {}),
    "action-net": ("action-net", {}),
    "gdlt": ("gdlt", {}),
    "weight-score": ("weight-score", {}),
    "weight-score-paper": ("weight-score", {"d_model": None}),  # the code's width: 1024, FFN 1024
}


def fisv_shaped(videos: int, seed: int = 0):
    """Fis-V's shape: clip features of 124-302 clips × 1024 (the GDLT Video Swin release), targets in [0, 1]."""
    from aqa_pipeline.train.data import SequenceData

    rng = np.random.default_rng(seed)
    x = [rng.standard_normal((int(rng.integers(124, 303)), 1024)).astype(np.float32) for _ in range(videos)]
    return SequenceData(
        ids=[f"v{i:03d}" for i in range(videos)], x=x, y=rng.uniform(size=videos).astype(np.float32)
    )


def gemm_peak(threads: int, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a large matrix product (4352 × 1024 by 1024 × 1024, a weight-score layer)."""
    import torch

    a, b = torch.randn(4352, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * 4352 * 1024 * 1024 / best / 1e9


def counting_mode():
    """A dispatch mode summing torch's own per-operator FLOP formulas (``FlopCounterMode`` without its module
    tracker, which fails on modules called under ``no_grad`` with parameters that require grad)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counting(TorchDispatchMode):
        flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.flops += formula(*args, **kwargs, out_val=out)
            return out

    return Counting()


def one_epoch(head_name: str, options: dict, train, val, count: bool) -> tuple[float, float]:
    """(seconds, FLOPs) of one training epoch with validation; FLOPs only when ``count``."""
    from aqa_pipeline.heads.registry import get_head

    head = get_head(head_name)(**{**options, "epochs": 1})
    if not count:
        return head.fit(train, val, seed=0, progress=False).seconds, float("nan")
    with counting_mode() as counter:
        head.fit(train, val, seed=0, progress=False)
    return float("nan"), float(counter.flops)


@click.command()
@click.option("--configs", default=",".join(CONFIGS), help=f"Comma-separated, of: {', '.join(CONFIGS)}.")
@click.option("--videos", default=400, help="Fis-V has 400 training videos; 15% of them validate.")
@click.option("--threads", default=1)
def main(configs: str, videos: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    data = fisv_shaped(videos)
    order = np.random.default_rng(0).permutation(videos)
    n_val = int(round(0.15 * videos))
    train, val = data.subset(order[n_val:]), data.subset(order[:n_val])
    peak = gemm_peak(threads)
    print(f"{videos} Fis-V-shaped videos ({len(train)} train, {n_val} validate), {threads} thread(s)")
    print(f"float32 GEMM peak here: {peak:.1f} GFLOP/s\n")
    print(
        "| configuration | TFLOP per epoch | s per epoch | GFLOP/s | share of GEMM peak | s per epoch at peak |"
    )
    print("|---|---|---|---|---|---|")
    for name in configs.split(","):
        head_name, options = CONFIGS[name]
        _, flops = one_epoch(head_name, options, train, val, count=True)
        seconds, _ = one_epoch(head_name, options, train, val, count=False)
        achieved = flops / seconds / 1e9
        print(
            f"| {name} | {flops / 1e12:.3f} | {seconds:.1f} | {achieved:.1f} | {achieved / peak:.0%} "
            f"| {flops / peak / 1e9:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
