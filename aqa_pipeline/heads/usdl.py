"""USDL and MUSDL: uncertainty-aware score distribution learning (Tang et al., CVPR 2020; heads-reference §7).

The score is a Gaussian over score bins instead of a number; the head predicts a distribution and is trained with
KL divergence. MUSDL has one head per judge and combines the judges with the sport's rule (diving: drop the two
highest and two lowest, sum the middle three, times the difficulty degree).

Faithful options: ``decode="argmax"`` (the code's decoding, which quantises predictions and creates ties) and
``kl_reduction="mean"`` (PyTorch's element-wise mean, dividing by B × bins). Defaults: ``expectation`` decoding and
``batchmean`` KL, which avoid those artefacts; the reference's advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from aqa_pipeline.heads.base import PooledInputHead
from aqa_pipeline.heads.baselines import _MLP, masked_mean
from aqa_pipeline.heads.options import OptionError, dropout_rate, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.heads.search import OPTIMISER_SPACE, Dimension, Integer, Real
from aqa_pipeline.train.data import Batch, SequenceData


def gaussian_soft_labels(centres: torch.Tensor, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) targets → (B, bins) Gaussian pdf on ``grid`` (same units), normalised to sum to 1 per row."""
    logits = -0.5 * ((grid[None, :] - centres[:, None]) / sigma) ** 2
    return torch.softmax(logits, dim=-1)


def decode(log_probs: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "argmax":
        return grid[log_probs.argmax(-1)]
    if mode == "expectation":
        return (log_probs.exp() * grid).sum(-1)
    raise ValueError(f"unknown decode {mode!r}: argmax or expectation")


def kl_loss(log_probs: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    return nn.functional.kl_div(log_probs, target, reduction=reduction)


@register_head("usdl")
class USDLHead(PooledInputHead):
    """One distribution over ``bins`` bins spanning the working range [0, 1] of the (normalised) score."""

    # What --tune explores (MUSDL too): the optimiser, the Gaussian's width, dropout and epochs.
    search_space: ClassVar[dict[str, Dimension]] = {
        **OPTIMISER_SPACE,
        "sigma_bins": Real(1.0, 10.0),
        "dropout": Real(0.0, 0.5),
        "epochs": Integer(50, 150),
    }

    @dataclass(frozen=True)
    class Options(PooledInputHead.Options):
        bins: int = option(101, min=2)  # code (MTL-AQA: 101 bins)
        sigma_bins: float = option(5.0, min=0, min_open=True)  # code (--std 5, in bin units)
        hidden: list[int] = option([256, 128])  # code (1024 → 256 → 128 → bins)
        dropout: float = dropout_rate(0.0)  # code (none)
        decode: Literal["expectation", "argmax"] = "expectation"  # chosen; "argmax" is the code's
        kl_reduction: Literal["batchmean", "mean", "sum"] = "batchmean"  # chosen; "mean" is the code's
        epochs: int = 100  # code
        lr: float = 1e-4  # code
        weight_decay: float = 0.0  # code (USDL)
        batch_size: int = 32
        eval_every: int = 5

    options: Options

    def grid(self) -> torch.Tensor:
        return torch.linspace(0.0, 1.0, self.options.bins, device=self.device)

    def build(self, train: SequenceData) -> nn.Module:
        return _MLP(
            int(np.prod(train.dim)), tuple(self.options.hidden), self.options.dropout, self.options.bins
        )

    def _log_probs(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return torch.log_softmax(model(masked_mean(batch.x.flatten(2), batch.mask)), dim=-1)

    def _sigma(self) -> float:
        return self.options.sigma_bins / (self.options.bins - 1)

    def loss(self, model: nn.Module, batch: Batch):
        target = gaussian_soft_labels(batch.y.clamp(0, 1), self.grid(), self._sigma())
        loss = kl_loss(self._log_probs(model, batch), target, self.options.kl_reduction)
        return loss, {"kl": float(loss.detach())}

    def predict_batch(self, model: nn.Module, batch: Batch):
        log_probs = self._log_probs(model, batch)
        return decode(log_probs, self.grid(), self.options.decode), {"distribution": log_probs.exp()}


@register_head("musdl")
class MUSDLHead(USDLHead):
    """One USDL head per judge over the judges' own scale; the judges are combined by the sport's rule.

    Judge scores come from the store labels ``judge1..judgeJ`` (raw, e.g. 0–10 in 0.5 steps for diving); the
    combined raw score goes back to working units through the run's label transform.
    """

    @dataclass(frozen=True)
    class Options(USDLHead.Options):
        bins: int = 21  # code (0–10 in steps of 0.5)
        judge_range: list[float] = option([0.0, 10.0])  # code (diving judges)
        sigma_bins: float = 5.0  # code (the same --std 5, i.e. 2.5 points)
        # code: middle three of seven, × DD; "mean": average judge × number of judges
        rule: Literal["diving", "mean"] = "diving"
        weight_decay: float = 1e-5  # code (MUSDL)

        def __post_init__(self) -> None:
            super().__post_init__()
            if len(self.judge_range) != 2 or self.judge_range[0] >= self.judge_range[1]:
                raise OptionError(
                    f"option judge_range={self.judge_range!r}: expected [low, high] with low < high"
                )

    options: Options

    def prepare(self, train: SequenceData, generator: torch.Generator) -> None:
        if train.judges is None:
            raise ValueError(
                "musdl needs per-judge scores (labels judge1..judgeN) for every video; this store has none"
            )
        if train.to_working is None:
            raise ValueError(
                "musdl needs the run's label transform (SequenceData.to_working) to combine judges"
            )

    def build(self, train: SequenceData) -> nn.Module:
        dim = int(np.prod(train.dim))
        heads = [
            _MLP(dim, tuple(self.options.hidden), self.options.dropout, self.options.bins)
            for _ in range(train.judges.shape[1])
        ]
        return nn.ModuleList(heads)

    def judge_grid(self) -> torch.Tensor:
        low, high = self.options.judge_range
        return torch.linspace(low, high, self.options.bins, device=self.device)

    def _judge_log_probs(self, model: nn.ModuleList, batch: Batch) -> torch.Tensor:
        pooled = masked_mean(batch.x.flatten(2), batch.mask)
        return torch.stack([torch.log_softmax(head(pooled), dim=-1) for head in model], dim=1)  # (B, J, bins)

    def loss(self, model: nn.Module, batch: Batch):
        low, high = self.options.judge_range
        sigma = self.options.sigma_bins * (high - low) / (self.options.bins - 1)
        log_probs = self._judge_log_probs(model, batch)
        grid = self.judge_grid()
        loss = sum(
            kl_loss(
                log_probs[:, j],
                gaussian_soft_labels(batch.judges[:, j], grid, sigma),
                self.options.kl_reduction,
            )
            for j in range(log_probs.shape[1])
        )
        return loss, {"kl": float(loss.detach())}

    def combine(self, judge_scores: torch.Tensor, difficulty: torch.Tensor | None) -> torch.Tensor:
        """(B, J) judge scores → (B,) raw total by the configured rule."""
        if self.options.rule == "diving":
            if judge_scores.shape[1] < 5:
                raise ValueError(f"the diving rule needs at least 5 judges, got {judge_scores.shape[1]}")
            ordered = judge_scores.sort(dim=1).values
            middle = ordered[:, 2:-2] if judge_scores.shape[1] == 7 else ordered[:, 1:-1]
            total = middle.sum(1)
            return total * difficulty if difficulty is not None else total
        return judge_scores.mean(1) * judge_scores.shape[1]  # rule "mean"

    def predict_batch(self, model: nn.Module, batch: Batch):
        log_probs = self._judge_log_probs(model, batch)
        judge_scores = decode(log_probs, self.judge_grid(), self.options.decode)
        raw = self.combine(judge_scores, batch.difficulty).cpu().numpy()
        difficulty = None if batch.difficulty is None else batch.difficulty.cpu().numpy()
        working = torch.as_tensor(self.train_data.to_working(raw, difficulty), device=self.device)
        return working, {"judge_scores": judge_scores}
