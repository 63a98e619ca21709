"""CoRe: contrastive regression on holistic video features (Yu et al., ICCV 2021).

Each video is one time-pooled feature vector; a pair is [f_exemplar ; f_query ; s_exemplar/θ] (heads-reference
§3), regressed with the same group-aware intervals and exemplar voting as TPT (``group_regression``), so the two
differ only in holistic vs part-wise pair representations. θ is the training targets' range (the code's 30 / 100).

The regressor is flat by default (TPT found the tree unnecessary): Linear→ReLU then interval cls/reg heads with
sigmoid offsets. ``regressor="tree"`` gives CoRe's RegressTree: binary splits over depth−1 levels whose
log-probabilities add up along each root-to-leaf path, and an unbounded per-leaf offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from aqa_pipeline.heads.base import PooledInputHead
from aqa_pipeline.heads.group_regression import ContrastiveHead, IntervalRegressor
from aqa_pipeline.heads.options import OptionError, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.heads.search import OPTIMISER_SPACE, Dimension, Integer, OneOf
from aqa_pipeline.train.data import SequenceData


class RegressTree(nn.Module):
    """CoRe's tree: stem Linear(in→h)+ReLU; each level maps every node's h features to two children (per-node
    weights, CoRe's grouped 1×1 convolutions) and a 2-way split; leaf log-probability = sum of split log-probs."""

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.children_weight = nn.ParameterList()
        self.children_bias = nn.ParameterList()
        self.split = nn.ParameterList()
        for level in range(depth - 1):
            nodes = 2**level
            self.children_weight.append(nn.Parameter(torch.randn(nodes, hidden, 2 * hidden) / hidden**0.5))
            self.children_bias.append(nn.Parameter(torch.zeros(nodes, 2 * hidden)))
            self.split.append(nn.Parameter(torch.randn(nodes, hidden, 2) / hidden**0.5))
        leaves = 2 ** (depth - 1)
        self.leaf = nn.Parameter(torch.randn(leaves, hidden) / hidden**0.5)
        self.leaf_bias = nn.Parameter(torch.zeros(leaves))

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(pair)[:, None, :]  # (P, nodes=1, h)
        log_prob = torch.zeros(len(pair), 1, device=pair.device, dtype=pair.dtype)
        for weight, bias, split in zip(self.children_weight, self.children_bias, self.split, strict=True):
            split_log_prob = torch.einsum("pnh,nhc->pnc", h, split).log_softmax(-1)  # (P, nodes, 2)
            log_prob = (log_prob[..., None] + split_log_prob).flatten(1)  # children in order 2n, 2n+1
            h = torch.relu(torch.einsum("pnh,nhk->pnk", h, weight) + bias).reshape(len(pair), -1, h.shape[-1])
        offsets = (h * self.leaf).sum(-1) + self.leaf_bias
        return log_prob, offsets


class FlatRegressor(nn.Module):
    def __init__(self, in_dim: int, hidden: int, n_intervals: int, head_hidden: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.heads = IntervalRegressor(hidden, n_intervals, head_hidden)

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.stem(pair))


@register_head("core")
class CoReHead(PooledInputHead, ContrastiveHead):
    # What --tune explores: the optimiser, the regressor's width, exemplar votes and epochs.
    search_space: ClassVar[dict[str, Dimension]] = {
        **OPTIMISER_SPACE,
        "hidden": OneOf((128, 256)),
        "n_exemplars": Integer(5, 20),
        "epochs": Integer(20, 100),
    }

    @dataclass(frozen=True)
    class Options(ContrastiveHead.Options):
        regressor: Literal["flat", "tree"] = "flat"  # chosen (TPT's finding); "tree" = CoRe's RegressTree
        hidden: int = option(256, min=1)  # code: first Linear(2049 -> 256) of the tree
        head_hidden: int = option(128, min=1)  # code (TPT's flat heads)
        lr: float = 1e-3  # code: regressor lr
        # chosen: code MTL bs 1 x step_per_update 2 (end-to-end); on cached features 32 is 16x faster
        batch_size: int = 32
        epochs: int = 100  # chosen: code 200; validation selection makes the tail unnecessary

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.regressor == "tree" and self.n_intervals & (self.n_intervals - 1):
                raise OptionError(f"option n_intervals={self.n_intervals}: the tree needs a power of two")

    options: Options

    def build(self, train: SequenceData) -> nn.Module:
        if len(train.dim) != 1:
            raise ValueError(f"core needs (T, D) clip features, got per-clip shape {train.dim}")
        in_dim = 2 * train.dim[0] + 1
        n = self.options.n_intervals
        if self.options.regressor == "tree":
            return RegressTree(in_dim, self.options.hidden, n.bit_length())
        return FlatRegressor(in_dim, self.options.hidden, n, self.options.head_hidden)

    def encode(self, model: nn.Module, x: torch.Tensor, mask: torch.Tensor):
        weights = mask.to(x.dtype)
        pooled = (x * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
        return pooled, {}

    def regress_pair(self, model, exemplar, query, exemplar_y):
        theta = self.intervals.score_range or 1.0
        return model(torch.cat([exemplar, query, exemplar_y[:, None] / theta], dim=-1))
