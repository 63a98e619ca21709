"""Building blocks the transformer heads share, written for the CPU: dropout and attention that cost a fraction
of torch's on the shapes AQA heads train (a few hundred clips × queries, dropout up to 0.7).

Why: profiling weight-score on Fis-V (1 thread) put 17% of a training step in ``bernoulli_``, the random draw
behind ``nn.Dropout`` and the attention dropout inside ``nn.MultiheadAttention``: one 32-bit draw per element.
``FastDropout`` draws 8 random bytes per 64-bit draw and keeps an element when its byte is below
``round((1 - p) · 256)``; on a (32, 136, 1024) tensor that is 11 ms against 69 ms. The price: the drop rate is
rounded to a multiple of 1/256 (0.7 becomes 0.6992), and the kept values are scaled by the exact inverse of the
rounded keep rate, so the expectation is unchanged.

``Attention`` is ``nn.MultiheadAttention`` (batch first) with that dropout on the attention probabilities; its
parameters have the same names and shapes, so weights saved by either load into the other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BYTE_LEVELS = 256


def keep_mask(shape: torch.Size, p: float, like: torch.Tensor) -> torch.Tensor:
    """A dropout mask of ``shape`` in ``like``'s dtype: 0 where dropped, 1 / keep-rate where kept."""
    keep = round((1.0 - p) * BYTE_LEVELS)
    count = math.prod(shape)
    draws = torch.randint(-(2**63), 2**63 - 1, ((count + 7) // 8,), dtype=torch.int64, device=like.device)
    random_bytes = draws.view(torch.uint8)[:count].view(shape)
    return (random_bytes < keep).to(like.dtype).mul_(BYTE_LEVELS / max(keep, 1))


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0:
        return x
    return x * keep_mask(x.shape, p, x)


class FastDropout(nn.Module):
    """``nn.Dropout`` with the cheaper draw above."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head attention, batch first, as ``nn.MultiheadAttention`` computes it (packed in-projection, mean of
    the heads' weights when asked), with ``FastDropout`` on the probabilities."""

    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"attention width {d_model} is not divisible by {n_head} heads")
        self.n_head, self.dropout = n_head, float(dropout)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Project ``x`` (B, L, d) with the ``part``-th third of the in-projection into (B, heads, L, d/heads)."""
        d = x.shape[-1]
        weight = self.in_proj_weight[part * d : (part + 1) * d]
        bias = self.in_proj_bias[part * d : (part + 1) * d]
        return F.linear(x, weight, bias).unflatten(-1, (self.n_head, -1)).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)
        scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(
            -2, -1
        )  # (B, heads, Lq, Lk); scaling q is cheaper
        if key_padding_mask is not None:
            scores.masked_fill_(key_padding_mask[:, None, None, :], float("-inf"))
        probabilities = scores.softmax(dim=-1)
        weights = probabilities.mean(dim=1) if need_weights else None
        attended = fast_dropout(probabilities, self.dropout, self.training) @ v
        return self.out_proj(attended.transpose(1, 2).flatten(2)), weights
