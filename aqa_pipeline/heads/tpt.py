"""TPT: temporal parsing transformer with part-aware contrastive regression (Bai et al., ECCV 2022).

K learnable queries ("atomic patterns") cross-attend to a video's clips through a decoder with no positional
encoding; a ranking loss orders the queries' attention centres in time and a sparsity loss keeps each one
compact, so query k comes to describe the k-th phase of the action. A (query, exemplar) pair is compared part by
part, the K relative vectors are averaged and regressed with CoRe's group-aware intervals (``group_regression``).
Details follow the authors' code (heads-reference §2.1-2.4), noted ``# code`` in ``Options``.

Long videos: the paper's videos have T = 20 clips and the margin 3.2 was tuned for that. ``segments`` (default
20) average-pools each video's real clips into that many equal segments before the decoder, so the losses see
the authors' geometry whatever the clip count, and training costs the same for a 300-clip Fis-V video as for a
dive. With ``segments=None`` the decoder reads the clips themselves and the margin is rescaled per video by
T/``margin_clips``. Attention maps are always returned per clip (a segment's weight spread over its clips).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from aqa_pipeline.heads.group_regression import ContrastiveHead, IntervalRegressor
from aqa_pipeline.heads.options import dropout_rate, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.heads.search import Dimension, Integer, OneOf, Real
from aqa_pipeline.train.data import SequenceData


def segment_pooling_matrix(lengths: torch.Tensor, segments: int, width: int) -> torch.Tensor:
    """(B, segments, width) rows averaging clips [⌊sL/S⌋, ⌈(s+1)L/S⌉) of each video (adaptive average pooling
    over the real clips only; short videos repeat clips across segments)."""
    s = torch.arange(segments, device=lengths.device, dtype=torch.float64)[None, :, None]
    length = lengths.to(torch.float64)[:, None, None].clamp(min=1)
    start = torch.floor(s * length / segments)
    end = torch.ceil((s + 1) * length / segments)
    t = torch.arange(width, device=lengths.device, dtype=torch.float64)[None, None, :]
    inside = ((t >= start) & (t < end)).to(torch.float32)
    return inside / inside.sum(-1, keepdim=True).clamp(min=1)


def attention_centres(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres μ_k = Σ_t t·A_kt (t = 1..T) and L1 spreads σ_k = Σ_t |t − μ_k|·A_kt of (B, K, T) attention."""
    t = torch.arange(1, attention.shape[-1] + 1, device=attention.device, dtype=attention.dtype)
    centre = (attention * t).sum(-1)
    spread = (attention * (t[None, None, :] - centre[..., None]).abs()).sum(-1)
    return centre, spread


def ranking_loss(centre: torch.Tensor, lengths: torch.Tensor, margin: torch.Tensor | float) -> torch.Tensor:
    """Hinges (mean over videos) asking μ_{k+1} − μ_k ≥ m, μ_0 − 1 ≥ m and T − μ_{K−1} ≥ m, summed (code)."""
    margin = torch.as_tensor(margin, dtype=centre.dtype, device=centre.device)
    margin = margin.expand(len(centre)) if margin.dim() == 0 else margin
    consecutive = torch.relu(margin[:, None] - (centre[:, 1:] - centre[:, :-1])).mean()
    first = torch.relu(margin - (centre[:, 0] - 1.0)).mean()
    last = torch.relu(margin - (lengths.to(centre.dtype) - centre[:, -1])).mean()
    return consecutive + first + last


def relative_position_encoding(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, T, dim) sinusoids of each clip's relative position t/L in its video (0 on padding).

    Not in TPT: without it the decoder is a function of the *set* of clips, so it can only parse time where the
    features themselves change along the action (true of diving I3D features, false of a synthetic signal)."""
    lengths = mask.sum(1, keepdim=True).clamp(min=1).to(torch.float32)
    position = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32)[None] / lengths  # (B, T)
    frequency = torch.logspace(0, 2, (dim + 1) // 2, device=mask.device)  # 1 to 100 radians per video
    angle = position[..., None] * frequency
    encoding = torch.cat([angle.sin(), angle.cos()], dim=-1)[..., :dim]
    return encoding * mask[..., None]


class CrossAttention(nn.Module):
    """Single-head attention of queries over clips: logits (q·k)/d/τ with a learnable τ (code: /d, not /√d),
    softmax over time with padded clips masked out."""

    def __init__(self, d_model: int, memory_dim: int, temperature: float) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(memory_dim, d_model)
        self.value = nn.Linear(memory_dim, d_model)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.d_model = d_model

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        key_position: torch.Tensor | None = None,
    ):
        keys = self.key(memory) if key_position is None else self.key(memory) + key_position
        logits = self.query(queries) @ keys.transpose(1, 2)
        logits = logits / (self.d_model * self.temperature.clamp(min=1e-4))
        attention = logits.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)  # (B, K, T)
        return attention @ self.value(memory), attention


class DecoderLayer(nn.Module):
    """Cross-attention → FFN → (layer 1 only) query self-attention, each with residual + LayerNorm (code order)."""

    def __init__(
        self,
        d_model: int,
        memory_dim: int,
        d_ffn: int,
        dropout: float,
        temperature: float,
        self_attention_heads: int | None,
    ) -> None:
        super().__init__()
        self.cross = CrossAttention(d_model, memory_dim, temperature)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model)
        )
        self.norm_cross, self.norm_ffn = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.self_attention = None
        if self_attention_heads:
            self.self_attention = nn.MultiheadAttention(
                d_model, self_attention_heads, dropout=dropout, batch_first=True
            )
            self.norm_self = nn.LayerNorm(d_model)

    def forward(self, tgt, query_embed, memory, mask, key_position=None):
        attended, attention = self.cross(tgt + query_embed, memory, mask, key_position)
        tgt = self.norm_cross(tgt + self.drop(attended))
        tgt = self.norm_ffn(tgt + self.drop(self.ffn(tgt)))
        if self.self_attention is not None:
            q = tgt + query_embed
            tgt = self.norm_self(tgt + self.drop(self.self_attention(q, q, tgt, need_weights=False)[0]))
        return tgt, attention


class TemporalParser(nn.Module):
    """Decoder (state starts at zero, queries act as DETR-style embeddings), pair encoder and interval heads."""

    def __init__(self, memory_dim: int, options: TPTHead.Options) -> None:
        super().__init__()
        d, k = options.d_model, options.queries
        self.query_embed = nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, d)))
        self.layers = nn.ModuleList(
            DecoderLayer(
                d,
                memory_dim,
                options.d_ffn,
                options.dropout,
                options.temperature,
                options.self_attention_heads if i == 0 else None,
            )
            for i in range(options.layers)
        )
        self.pair_encoder = nn.Sequential(
            nn.Linear(2 * d, d), nn.ReLU(), nn.Dropout(options.dropout), nn.Linear(d, d)
        )
        self.regressor = IntervalRegressor(d, options.n_intervals, options.regressor_hidden)
        self.positional = options.positional == "sinusoidal"

    def forward(self, memory: torch.Tensor, mask: torch.Tensor):
        tgt = torch.zeros(len(memory), *self.query_embed.shape, device=memory.device, dtype=memory.dtype)
        position = relative_position_encoding(mask, tgt.shape[-1]) if self.positional else None
        attentions = []
        for layer in self.layers:
            tgt, attention = layer(tgt, self.query_embed, memory, mask, position)
            attentions.append(attention)
        return tgt, attentions


@register_head("tpt")
class TPTHead(ContrastiveHead):
    # What --tune explores: both learning rates, dropout, the query count, the width and the segment count.
    search_space: ClassVar[dict[str, Dimension]] = {
        "lr": Real(3e-5, 1e-3, log=True),
        "head_lr": Real(1e-4, 3e-3, log=True),
        "weight_decay": Real(1e-6, 1e-2, log=True),
        "standardise_inputs": OneOf((False, True)),
        "dropout": Real(0.0, 0.5),
        "queries": Integer(3, 8),
        "d_model": OneOf((128, 256, 512)),
        "segments": OneOf((10, 20, 40)),
        "epochs": Integer(20, 80),
    }

    @dataclass(frozen=True)
    class Options(ContrastiveHead.Options):
        d_model: int = option(512, min=1)  # code (README command line; opt.py default 1024)
        d_ffn: int = option(512, min=1)  # code
        queries: int = option(5, min=1)  # code (current README; K=7 with margin 2 in earlier commits)
        layers: int = option(2, min=1)  # code
        # code: query self-attention in layer 1 only, after the FFN
        self_attention_heads: int = option(8, min=1)
        temperature: float = option(0.07, min=0, min_open=True)  # code: learnable τ per layer, initial value
        dropout: float = dropout_rate(0.1)  # code
        margin: float = 3.2  # code: ranking margin for T = 20 clips
        # code/paper: the clip count the margin was tuned for; None = no rescaling
        margin_clips: int | None = option(20, min=1)
        # code: none; "sinusoidal" adds relative-position sinusoids to the keys (ours)
        positional: Literal["none", "sinusoidal"] = "none"
        # code: False; True adds query k's embedding to part k before the pair encoder
        part_identity: bool = False
        # chosen: pool each video into 20 segments (paper's T); None = decode the clips
        segments: int | None = option(20, min=1)
        rank_weight: float = 1.0  # code
        sparsity_weight: float = 0.05  # code
        regressor_hidden: int = option(128, min=1)  # code
        lr: float = 1e-4  # code: decoder and pair encoder
        head_lr: float = option(1e-3, min=0, min_open=True)  # code: cls / reg heads
        batch_size: int = 24  # code: 8 GPUs x 3
        epochs: int = 60  # chosen: code 250 (end-to-end); 60 x 3.7 CPU-s = 3.7 min on Fis-V single-threaded

    options: Options
    explanation_keys: ClassVar[tuple[str, ...]] = ("attention", "attention_centre")
    clip_axes: ClassVar[dict[str, int | tuple[int, str]]] = {"attention": 1}

    def build(self, train: SequenceData) -> nn.Module:
        if len(train.dim) != 1:
            raise ValueError(f"tpt needs (T, D) clip features, got per-clip shape {train.dim}")
        return TemporalParser(train.dim[0], self.options)

    def configure_optimizer(self, model: nn.Module):
        head = list(model.regressor.parameters())
        head_ids = {id(p) for p in head}
        rest = [p for p in model.parameters() if id(p) not in head_ids]
        groups = [{"params": rest, "lr": self.options.lr}, {"params": head, "lr": self.options.head_lr}]
        return torch.optim.Adam(groups, weight_decay=self.options.weight_decay), None

    def encode(self, model: nn.Module, x: torch.Tensor, mask: torch.Tensor):
        lengths = mask.sum(1)
        segments = self.options.segments
        if segments:
            pooling = segment_pooling_matrix(lengths, int(segments), x.shape[1]).to(x.dtype)
            memory, memory_mask = (
                pooling @ x,
                torch.ones(len(x), int(segments), dtype=torch.bool, device=x.device),
            )
            memory_lengths = torch.full_like(lengths, int(segments))
        else:
            pooling, memory, memory_mask, memory_lengths = None, x, mask, lengths
        parts, attentions = model(memory, memory_mask)
        per_clip = attentions[-1] if pooling is None else attentions[-1] @ pooling
        centre, _ = attention_centres(per_clip)
        aux = {
            "attentions": attentions,
            "memory_lengths": memory_lengths,
            "attention": per_clip,
            "attention_centre": centre,
        }
        return parts, aux

    def regress_pair(self, model, exemplar, query, exemplar_y):
        if self.options.part_identity:  # let the shared pair encoder know which part it compares
            exemplar, query = exemplar + model.query_embed, query + model.query_embed
        pair = model.pair_encoder(torch.cat([exemplar, query], dim=-1)).mean(1)  # average over the K parts
        return model.regressor(pair)

    def margin_for(self, lengths: torch.Tensor) -> torch.Tensor:
        """The ranking margin in the decoder's time units: as configured at ``margin_clips`` clips, scaled by T."""
        margin = torch.full(lengths.shape, float(self.options.margin), device=lengths.device)
        if self.options.margin_clips:
            margin = margin * lengths.to(margin.dtype) / float(self.options.margin_clips)
        return margin

    def auxiliary_loss(self, aux: dict, mask: torch.Tensor):
        """Ranking + 0.05·sparsity on every layer's attention, for query and exemplar videos alike."""
        lengths = aux["memory_lengths"]
        margin = self.margin_for(lengths)
        rank = sparse = 0.0
        for attention in aux["attentions"]:
            centre, spread = attention_centres(attention)
            rank = rank + ranking_loss(centre, lengths, margin)
            sparse = sparse + spread.mean()
        total = self.options.rank_weight * rank + self.options.sparsity_weight * sparse
        return total, {"rank": float(rank.detach()), "sparsity": float(sparse.detach())}
