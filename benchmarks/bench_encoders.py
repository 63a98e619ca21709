"""Clips/s of every stage-one encoder at its paper's input size, its fp32 FLOPs per clip, and the fraction of this
machine's practical fp32 peak (its best measured kernels) that reaches.

Random weights (same compute as real ones). FLOPs are counted by ``torch.utils.flop_counter`` on one clip
(convolutions, matmuls and attention; 2 FLOPs per multiply-add). The peak is the best of a large fp32 matmul and a
large 3-D convolution on the same threads, so "fraction of peak" says how far each architecture is from what this
CPU's best kernels reach.

    python benchmarks/bench_encoders.py --threads 2 --repeats 2
"""

from __future__ import annotations

import time

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

# encoder → (input (L, H, W) per clip, the paper recipe it stands for, clips per forward pass)
INPUTS = {
    "i3d": ((16, 224, 224), "CoRe/MUSDL MTL-AQA clip", 4),
    "swin3d-b": ((32, 224, 224), "GDLT Fis-V/RG clip", 1),
    "swin3d-t": ((32, 224, 224), "GDLT layout", 1),
    "resnet50": ((1, 224, 224), "ACTION-NET static frame", 16),
    "mobilenet-v2": ((1, 224, 224), "ImageNet frame", 16),
}


def practical_peak(trials: int = 3) -> float:
    """Best fp32 GFLOP/s of a large square matmul and a large channels-last 3-D convolution (oneDNN's direct
    kernels beat its GEMM here), on these threads: what this CPU's best kernels reach, not its datasheet peak."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    conv = torch.nn.Conv3d(256, 256, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last_3d)
    x = torch.randn(4, 256, 8, 28, 28).contiguous(memory_format=torch.channels_last_3d)
    probes = [(lambda: a @ b, 2 * 4096**3), (lambda: conv(x), 2 * 256 * 256 * 27 * 4 * 8 * 28 * 28)]
    best = 0.0
    with torch.inference_mode():
        for run, flops in probes:
            run()
            for _ in range(trials):
                start = time.perf_counter()
                run()
                best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_clip(encoder, shape) -> float:
    clip = torch.zeros(1, *shape, 3, dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter:
        encoder(clip)
    return counter.get_total_flops()


def clips_per_second(encoder, shape, batch: int, repeats: int) -> float:
    clips = torch.randint(0, 256, (batch, *shape, 3), dtype=torch.uint8)
    encoder(clips)  # warm-up: oneDNN kernels for this shape
    start = time.perf_counter()
    for _ in range(repeats):
        encoder(clips)
    return batch * repeats / (time.perf_counter() - start)


@click.command()
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=2, show_default=True, help="Timed forward passes per encoder.")
@click.option("--encoders", default=",".join(INPUTS), show_default=True)
def main(threads: int, repeats: int, encoders: str) -> None:
    from aqa_pipeline.encoders.registry import load_encoder

    torch.set_num_threads(threads)
    peak = practical_peak()
    click.echo(f"practical fp32 peak (best of a 4096² matmul and a 256-channel 3-D conv) on {threads} threads: "
               f"{peak:.0f} GFLOP/s\n")  # fmt: skip
    click.echo("| encoder | input (L×H×W) | recipe | GFLOPs/clip | clips/s | frames/s | % of peak |")
    click.echo("|---|---|---|---|---|---|---|")
    for name in encoders.split(","):
        shape, recipe, batch = INPUTS[name]
        encoder = load_encoder(name, random=True)
        gflops = flops_per_clip(encoder, shape) / 1e9
        rate = clips_per_second(encoder, shape, batch, repeats)
        click.echo(
            f"| {name} | {'×'.join(map(str, shape))} | {recipe} | {gflops:.1f} | {rate:.2f} | "
            f"{rate * shape[0]:.1f} | {100 * gflops * rate / peak:.0f}% |"
        )


if __name__ == "__main__":
    main()
