"""What training K models as one vectorised model buys on a CPU (``torch.func.stack_module_state`` + ``vmap``).

A tuning trial trains the same architecture K folds × S seeds times on different rows. Instead of K·S models one
after the other, their parameters can be stacked and one ``vmap``-ed step trains them all. This times a training
step (forward, backward, Adam) of K models both ways, on Fis-V-shaped batches (32 videos; the MLP on time-pooled
1024-d features, weight-score at its default width on 136 clips), single-threaded.

    python benchmarks/bench_vmap_folds.py --models 5 --steps 10
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1))


class _WeightScorePrediction(nn.Module):
    """weight-score at its defaults (without dropout: vmap and random masks are kept out), videos unpadded."""

    def __init__(self) -> None:
        super().__init__()
        from aqa_pipeline.heads.registry import get_head
        from aqa_pipeline.heads.weight_score import WeightScoreModel

        self.inner = WeightScoreModel(1024, get_head("weight-score").parse_options({"dropout": 0.0}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x, torch.ones(x.shape[:2], dtype=torch.bool))["prediction"]


def _inputs(kind: str, models: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (models, 32, 1024) if kind == "mlp" else (models, 32, 136, 1024)
    return torch.randn(shape), torch.rand(models, 32)


def sequential(build, kind: str, models: int, steps: int) -> float:
    nets = [build() for _ in range(models)]
    optimisers = [torch.optim.Adam(n.parameters(), 1e-3) for n in nets]
    x, y = _inputs(kind, models)
    started = time.perf_counter()
    for _ in range(steps):
        for k, (net, optimiser) in enumerate(zip(nets, optimisers, strict=True)):
            loss = nn.functional.mse_loss(net(x[k]).reshape(-1), y[k])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return (time.perf_counter() - started) / steps


def vectorised(build, kind: str, models: int, steps: int) -> float:
    nets = [build() for _ in range(models)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    leaves = {name: p.detach().requires_grad_(False) for name, p in params.items()}
    optimiser = torch.optim.Adam(list(leaves.values()), 1e-3)

    def loss(p, b, x, y):
        return nn.functional.mse_loss(functional_call(base, (p, b), (x,)).reshape(-1), y)

    step = vmap(grad_and_value(loss))
    x, y = _inputs(kind, models)
    started = time.perf_counter()
    for _ in range(steps):
        grads, _ = step(leaves, buffers, x, y)
        for name, leaf in leaves.items():
            leaf.grad = grads[name]
        optimiser.step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for kind, build, steps in (
        ("mlp", _mlp, args.steps * 10),
        ("weight-score", _WeightScorePrediction, args.steps),
    ):
        one_by_one = sequential(build, kind, args.models, steps)
        together = vectorised(build, kind, args.models, steps)
        print(
            f"{kind:13s} {args.models} models, one training step each: one after the other "
            f"{one_by_one * 1000:8.1f} ms, vmap {together * 1000:8.1f} ms (×{one_by_one / together:.2f})"
        )


if __name__ == "__main__":
    main()
