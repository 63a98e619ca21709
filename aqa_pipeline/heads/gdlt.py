"""GDLT: grade-decoupling Likert transformer (Xu et al., CVPR 2022), on cached clip features.

A transformer encoder reads the clips; a decoder with a few learnable *grade* queries (no text, no positional
encoding) asks how strongly the video responds to each grade. Responses are normalised across grades and the score
is their weighted sum of fixed grade values, so ``grades`` explains a prediction directly ("mostly grade 3 of 4").
What the authors' code does, and where we differ, is in ``heads-reference.md`` §4.1; the two deliberate fixes are
padding masks in attention and batch-norm statistics computed over real clips only (``input_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from aqa_pipeline.heads.base import TorchHead
from aqa_pipeline.heads.options import dropout_rate, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.heads.search import OPTIMISER_SPACE, Dimension, Integer, OneOf, Real
from aqa_pipeline.train.data import Batch, SequenceData


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over channel-last clips (B, T, C) whose batch statistics ignore padded clips.

    The authors' BN averages over zero-padded clips too, so a batch of short videos shifts the statistics towards
    the padding; here the mean/variance come from real clips only. Evaluation uses the running statistics as usual.
    Channel-last, so that the projection around it needs no transposes (see ``InputProjection``).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        x = x.float()  # statistics in fp32 under bf16 autocast too: the running buffers are fp32
        weight = mask[..., None].to(x.dtype)  # (B, T, 1)
        count = weight.sum().clamp(min=2.0)
        mean = (x * weight).sum(dim=(0, 1)) / count
        var = (((x - mean) ** 2) * weight).sum(dim=(0, 1)) / count
        with torch.no_grad():
            unbiased = var * count / (count - 1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
            self.num_batches_tracked += 1
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class InputProjection(nn.Module):
    """Conv1d(k=1) D→512 → BN → ReLU → Conv1d 512→d → BN, as in the code; BN masked unless ``masked=False``.

    The parameters are the code's Conv1d ones (checkpoints keep their shapes), applied as matrix products on
    channel-last (B, T, D) clips: the same arithmetic as the kernel-1 convolutions, without the (B, D, T) transpose
    copies around them. On Fis-V batches (32 × 68 clips × 1024, 1 thread) projection + encoder, forward and
    backward, took 412 ms instead of 472 ms.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, masked: bool) -> None:
        super().__init__()
        self.masked = masked
        self.conv1 = nn.Conv1d(in_dim, hidden, 1)
        self.norm1 = MaskedBatchNorm1d(hidden)
        self.conv2 = nn.Conv1d(hidden, out_dim, 1)
        self.norm2 = MaskedBatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bn_mask = mask if self.masked else None
        h = F.relu(self.norm1(pointwise(self.conv1, x), bn_mask))
        return self.norm2(pointwise(self.conv2, h), bn_mask)


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 ``conv`` applied to channel-last ``x`` (B, T, C_in) → (B, T, C_out), as one matrix product."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


class GradeDecoderLayer(nn.Module):
    """Post-norm decoder layer (self-attention → cross-attention → FFN) that can return its cross-attention map."""

    def __init__(self, d_model: int, n_head: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def forward(self, x, memory, memory_padding, need_weights: bool = False):
        x = self.norms[0](x + self.dropouts[0](self.self_attn(x, x, x, need_weights=False)[0]))
        attended, weights = self.cross_attn(
            x, memory, memory, key_padding_mask=memory_padding, need_weights=need_weights
        )
        x = self.norms[1](x + self.dropouts[1](attended))
        x = self.norms[2](x + self.dropouts[2](self.ffn(x)))
        return x, weights


class GDLTModel(nn.Module):
    def __init__(self, in_dim: int, options: GDLTHead.Options) -> None:
        super().__init__()
        d, n_grades = options.d_model, options.n_grades
        self.project = InputProjection(in_dim, options.hidden, d, masked=options.input_norm == "masked")
        encoder_layer = nn.TransformerEncoderLayer(
            d, options.n_head, options.ffn, options.dropout, batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(
            encoder_layer, options.n_encoder, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        self.decoder = nn.ModuleList(
            GradeDecoderLayer(d, options.n_head, options.ffn, options.dropout)
            for _ in range(options.n_decoder)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.grade_queries = nn.Embedding(n_grades, d)
        nn.init.xavier_uniform_(self.grade_queries.weight)
        # One Linear scored on every decoded query, keeping only the diagonal: query i is read by row i (code).
        self.grade_logit = nn.Linear(d, n_grades)
        self.register_buffer("grade_values", torch.linspace(0.0, 1.0, n_grades))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, need_attention: bool = False):
        """Score (B,), normalised grade responses (B, G), decoded queries (B, G, d), attention (B, G, T) or None."""
        padding = ~mask
        memory = self.encoder(self.project(x, mask), src_key_padding_mask=padding)
        queries = self.grade_queries.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        attention = None
        for i, layer in enumerate(self.decoder):
            last = i == len(self.decoder) - 1
            queries, weights = layer(queries, memory, padding, need_weights=need_attention and last)
            attention = weights if weights is not None else attention
        decoded = self.decoder_norm(queries)
        logits = torch.diagonal(self.grade_logit(decoded), dim1=1, dim2=2)  # (B, G)
        intensity = torch.sigmoid(logits)
        responses = intensity / intensity.sum(dim=1, keepdim=True)
        score = responses @ self.grade_values
        return score, responses, decoded, attention


def hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss with Euclidean (not squared) distances: hardest positive, hardest negative."""
    squared = torch.cdist(embeddings, embeddings).pow(2)
    distance = torch.sqrt(squared.clamp(min=1e-12))  # eps keeps the gradient finite at zero distance
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distance * same).max(dim=1).values
    hardest_negative = distance.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_positive - hardest_negative + margin).mean()


@register_head("gdlt")
class GDLTHead(TorchHead):
    """Grade-decoupling Likert transformer. Explanations: ``grades`` (G,) and ``attention`` (G, T)."""

    clip_axes: ClassVar[dict] = {"attention": 1}  # (grades, clips)
    # chosen: no carve, so the last of the cosine-annealed epochs is kept and every training video is used (the code
    # selects its epoch on the test videos: --protocol paper). 5-fold CV of the 400 Fis-V training videos, fold
    # seeds 100-102, TES / PCS: 0.531 ± 0.034 / 0.779 ± 0.005, against 0.479 ± 0.019 / 0.744 ± 0.015 with a 15%
    # carve choosing the epoch on 48 videos (seed 100 made the choice). --val-fraction 0.15 restores the carve.
    default_val_fraction: ClassVar[float] = 0.0
    # What --tune explores: the optimiser, dropout, grade count, triplet weight, training window and epochs.
    search_space: ClassVar[dict[str, Dimension]] = {
        **OPTIMISER_SPACE,
        "dropout": Real(0.0, 0.5),
        "n_grades": Integer(2, 6),
        "triplet_weight": Real(0.1, 3.0, log=True),
        "window": OneOf((32, 68, 136)),
        "epochs": Integer(10, 60),
    }

    @dataclass(frozen=True)
    class Options(TorchHead.Options):
        hidden: int = option(512, min=1)  # code: first Conv1d width
        d_model: int = option(256, min=1)  # code
        ffn: int = option(768, min=1)  # code: 3 × d_model
        n_head: int = option(1, min=1)  # code (README does not override n_head=1)
        n_encoder: int = option(1, min=1)  # code
        n_decoder: int = option(2, min=1)  # code
        n_grades: int = option(4, min=1)  # code: n_query
        dropout: float = dropout_rate(0.3)  # code
        triplet_weight: float = option(1.0, min=0)  # code: alpha
        triplet_margin: float = option(1.0, min=0)  # code
        # chosen: "masked" BN statistics over real clips; "unmasked" = code (padding in)
        input_norm: Literal["masked", "unmasked"] = "masked"
        # chosen by 5-fold CV on the Fis-V training videos (seeds 0-1, TES / PCS): Adam 3e-4 for 40 epochs 0.500, 0.507
        # / 0.752, 0.744. At Adam 1e-3 (seed 0: 0.464 / 0.721) every grade logit saturated within two epochs
        # (|logit| ≈ 3.5, sigmoid slope 0.03), the score stuck at the constant of equal grades, and 3 of 5
        # paper-protocol folds never left it. The code's SGD 1e-2 (momentum 0.9) cut to 20 epochs: 0.326 / 0.564,
        # still rising; its 150-500 SGD epochs do not fit 5 minutes on 2 CPU cores. Faithful: --set optimizer=sgd
        # --set lr=1e-2
        optimizer: Literal["adam", "sgd"] = "adam"
        lr: float = 3e-4  # chosen (see optimizer); code: 1e-2 with SGD
        momentum: float = option(0.9, min=0)  # code (optimizer="sgd" only)
        weight_decay: float = 1e-4  # code
        # code: cosine annealing to lr × decay-rate 0.01, per epoch, no warm-up
        lr_min_ratio: float = option(0.01, min=0, max=1)
        batch_size: int = 32  # code
        epochs: int = 40  # chosen (see optimizer): 3.3 min on 2 CPU cores for Fis-V (code: 150-500 on RG)
        window: int | None = 68  # code: clip_num 68 (RG); Fis-V value not in the repo
        test_window: Literal["full"] | int = "full"  # code: full-length test sequence

    options: Options

    def build(self, train: SequenceData) -> nn.Module:
        if len(train.dim) != 1:
            raise ValueError(f"gdlt expects (T, D) clip features, got per-clip shape {train.dim}")
        return GDLTModel(train.dim[0], self.options)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        score, _responses, decoded, _ = model(batch.x, batch.mask)
        mse = F.mse_loss(score, batch.y)
        n_grades = decoded.shape[1]
        labels = torch.arange(n_grades, device=decoded.device).repeat(decoded.shape[0])
        triplet = hard_triplet_loss(
            decoded.reshape(-1, decoded.shape[-1]), labels, self.options.triplet_margin
        )
        total = mse + self.options.triplet_weight * triplet
        return total, {"mse": float(mse.detach()), "triplet": float(triplet.detach())}

    def predict_batch(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        score, responses, _decoded, attention = model(batch.x, batch.mask, need_attention=True)
        return score, {"grades": responses, "attention": attention}

    def configure_optimizer(self, model: nn.Module):
        options = self.options
        if options.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                model.parameters(),
                lr=options.lr,
                momentum=options.momentum,
                weight_decay=options.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(int(options.epochs), 1), eta_min=options.lr * options.lr_min_ratio
        )
        return optimizer, scheduler
