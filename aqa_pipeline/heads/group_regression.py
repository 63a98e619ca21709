"""Contrastive (exemplar-relative) scoring with group-aware regression, shared by CoRe, TPT (and FSPN).

A query is scored *relative to* training exemplars: a pair representation predicts Δ = y_query − y_exemplar, and
the score is y_exemplar + Δ̂ averaged over several exemplars. Δ is predicted the way CoRe's ``Group_helper`` does
(heads-reference §2.2): classify Δ into one of 2^(depth−1) intervals whose bounds are equal-count quantiles of
|Δ| over training pairs of the same group (mirrored for Δ < 0), then regress the position inside the interval.

Everything here is built from TRAINING data only: interval bounds, the largest difference (``score_range``,
CoRe's hard-coded 30/100, here the training targets' range) and the exemplar pool. Test-time exemplar lists are
a pure function of (seed, video id), so they are reproducible and can be saved next to the predictions.
"""

from __future__ import annotations

import zlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqa_pipeline.heads.base import Prediction, TorchHead
from aqa_pipeline.heads.options import option
from aqa_pipeline.train.data import Batch, Batcher, SequenceData


# ---------------------------------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------------------------------
def group_keys(data: SequenceData) -> tuple[str, np.ndarray | None]:
    """Which videos may be compared: same difficulty degree, else same action class, else any two videos."""
    if data.difficulty is not None:
        return "difficulty", np.asarray(data.difficulty)
    if data.groups is not None:
        return "groups", np.asarray(data.groups)
    return "all", None


def within_group_differences(y: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """|y_i − y_j| over all unordered pairs i < j sharing a key (all pairs when ``keys`` is None)."""
    y = np.asarray(y, dtype=np.float64)
    members = [np.arange(len(y))] if keys is None else [np.flatnonzero(keys == k) for k in np.unique(keys)]
    out = []
    for rows in members:
        if len(rows) > 1:
            i, j = np.triu_indices(len(rows), k=1)
            out.append(np.abs(y[rows[i]] - y[rows[j]]))
    return np.concatenate(out) if out else np.zeros(0)


class GroupIntervals:
    """Symmetric relative-score intervals: ``bounds[i] = (l_i, r_i)``, ascending, first half negative.

    Membership (CoRe's rule): Δ ≥ 0 belongs to the positive interval with l ≤ Δ < r, Δ < 0 to the negative one with
    l < Δ ≤ r; values past the outermost bounds belong to the outermost intervals. Degenerate intervals (l = r,
    from tied quantiles) can only be reached by decoding, never as a training target.
    """

    def __init__(self, bounds: np.ndarray) -> None:
        bounds = np.asarray(bounds, dtype=np.float64)
        if bounds.ndim != 2 or bounds.shape[1] != 2 or len(bounds) % 2:
            raise ValueError(f"interval bounds must be (even n, 2), got {bounds.shape}")
        self.bounds = bounds
        self.half = len(bounds) // 2
        self._positive_upper = np.ascontiguousarray(bounds[self.half :, 1])

    @classmethod
    def from_differences(
        cls, differences: np.ndarray, n_intervals: int = 16, score_range: float | None = None
    ):
        """Equal-count quantiles of |Δ| (index ``int(frac·(n−1))`` of the sorted list, as CoRe), first lower bound
        forced to 0 and last upper bound to ``score_range`` (default: the largest training difference)."""
        d = np.sort(np.abs(np.asarray(differences, dtype=np.float64)))
        if len(d) == 0:
            raise ValueError("group intervals need at least one training pair with a shared group")
        if n_intervals < 2 or n_intervals % 2:
            raise ValueError(f"n_intervals must be a positive even number, got {n_intervals}")
        half = n_intervals // 2
        edges = np.array([d[int(i / half * (len(d) - 1))] for i in range(half + 1)])
        edges[0] = 0.0
        edges[-1] = float(d[-1]) if score_range is None else float(score_range)
        positive = np.stack([edges[:-1], edges[1:]], axis=1)
        negative = -positive[::-1, ::-1]
        return cls(np.concatenate([negative, positive]))

    @classmethod
    def from_training(
        cls, y: np.ndarray, keys: np.ndarray | None, n_intervals: int = 16, score_range: float | None = None
    ) -> GroupIntervals:
        differences = within_group_differences(y, keys)
        if len(differences) == 0:  # every group is a singleton: fall back to all pairs
            differences = within_group_differences(y, None)
        if score_range is None:
            score_range = float(np.ptp(np.asarray(y, dtype=np.float64)))
        return cls.from_differences(differences, n_intervals, score_range)

    def __len__(self) -> int:
        return len(self.bounds)

    @property
    def score_range(self) -> float:
        return float(self.bounds[-1, 1])

    def assign(self, delta: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(leaf index (long), offset target (float)) for each Δ; offset = (Δ − l)/(r − l), or Δ − l when l = r."""
        delta_t = torch.as_tensor(delta, dtype=torch.float64)
        upper = torch.as_tensor(self._positive_upper, dtype=torch.float64)
        rank = torch.searchsorted(upper, delta_t.abs().contiguous(), right=True).clamp(max=self.half - 1)
        leaf = torch.where(delta_t >= 0, self.half + rank, self.half - 1 - rank)
        bounds = torch.as_tensor(self.bounds, dtype=torch.float64)[leaf]
        width = bounds[..., 1] - bounds[..., 0]
        offset = torch.where(
            width > 0, (delta_t - bounds[..., 0]) / width.clamp(min=1e-12), delta_t - bounds[..., 0]
        )
        return leaf, offset.to(torch.float32)

    def decode(self, leaf: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Δ̂ = l + (r − l)·offset of the chosen leaf (argmax of the classifier, as the authors' code; no soft mix)."""
        bounds = torch.as_tensor(self.bounds, dtype=offset.dtype, device=offset.device)[leaf]
        return bounds[..., 0] + (bounds[..., 1] - bounds[..., 0]) * offset


def group_regression_loss(
    logits: torch.Tensor,
    offsets: torch.Tensor,
    leaf: torch.Tensor,
    target: torch.Tensor,
    classification: str = "nll",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(interval classification loss, squared error of the true leaf's offset), each averaged over the pairs.

    ``nll``: softmax cross-entropy over the intervals (CoRe's and TPT's code); ``bce``: one binary decision per
    interval against the one-hot true interval (FSPN's paper)."""
    if classification == "nll":
        cls = F.cross_entropy(logits, leaf)
    elif classification == "bce":
        cls = F.binary_cross_entropy_with_logits(logits, F.one_hot(leaf, logits.shape[1]).to(logits.dtype))
    else:
        raise ValueError(f"unknown interval loss {classification!r}: nll or bce")
    reg = F.mse_loss(offsets.gather(1, leaf[:, None]).squeeze(1), target)
    return cls, reg


class IntervalRegressor(nn.Module):
    """TPT's flat heads: cls Linear(d→h)→ReLU→Linear(h→n) and reg Linear(d→h)→ReLU→Linear(h→n)→sigmoid."""

    def __init__(self, in_dim: int, n_intervals: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.cls = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_intervals))
        self.reg = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_intervals))

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls(pair), torch.sigmoid(self.reg(pair))


# ---------------------------------------------------------------------------------------------------------------
# Exemplars
# ---------------------------------------------------------------------------------------------------------------
class ExemplarPool:
    """Training videos grouped by key; draws training exemplars and fixed, seeded test exemplar lists."""

    def __init__(self, ids: list[str], keys: np.ndarray | None, kind: str) -> None:
        self.ids = list(ids)
        self.kind = kind
        self.keys = None if keys is None else np.asarray(keys)
        self._row_of = {vid: i for i, vid in enumerate(self.ids)}
        if self.keys is None:
            self._members = {None: np.arange(len(self.ids))}
        else:
            self._members = {k: np.flatnonzero(self.keys == k) for k in np.unique(self.keys)}

    def candidates(self, key: Any, exclude: int | None) -> np.ndarray:
        """Training rows comparable with ``key``: same group; a difficulty never seen in training borrows the
        nearest difficulty's group; an unseen class (or a singleton group) falls back to every training video."""
        if self.keys is None:
            rows = self._members[None]
        elif key in self._members:
            rows = self._members[key]
        elif self.kind == "difficulty":
            known = np.array(list(self._members))
            rows = self._members[known[np.argmin(np.abs(known.astype(np.float64) - float(key)))]]
        else:
            rows = np.arange(len(self.ids))
        if exclude is not None:
            rows = rows[rows != exclude]
        if len(rows) == 0:
            rows = np.array([r for r in range(len(self.ids)) if r != exclude], dtype=np.int64)
        return rows

    def sample_train(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random comparable exemplar per training row, never the row itself."""
        out = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            key = None if self.keys is None else self.keys[row]
            out[i] = rng.choice(self.candidates(key, exclude=int(row)))
        return out

    def test_lists(self, ids: list[str], keys: np.ndarray | None, count: int, seed: int) -> np.ndarray:
        """(len(ids), count) training rows, −1 where a group has fewer than ``count`` candidates.

        Each list depends only on (seed, video id): reproducible, independent of batch order, and a training
        video scored as a query never serves as its own exemplar."""
        out = np.full((len(ids), count), -1, dtype=np.int64)
        for i, vid in enumerate(ids):
            key = None if (keys is None or self.keys is None) else keys[i]
            rows = self.candidates(key, exclude=self._row_of.get(vid))
            rng = np.random.default_rng([seed, zlib.crc32(vid.encode())])
            chosen = rng.permutation(rows)[:count]
            out[i, : len(chosen)] = chosen
        return out


# ---------------------------------------------------------------------------------------------------------------
# The shared head
# ---------------------------------------------------------------------------------------------------------------
class ContrastiveHead(TorchHead):
    """A head scoring a query against exemplars. Subclasses say how a video is encoded and how a pair is regressed.

    Training: each query gets one random comparable exemplar; both pair orders are regressed (as CoRe/TPT).
    Prediction: ``n_exemplars`` fixed exemplars per video (``exemplar_lists``), votes y_ex + Δ̂ averaged. The lists
    are returned as the explanation ``exemplar_index`` (rows of ``self.train_data``, whose ``ids`` name them; −1 =
    unused) with each exemplar's ``exemplar_delta`` (Δ̂ in working units).
    """

    @dataclass(frozen=True)
    class Options(TorchHead.Options):
        n_intervals: int = option(16, min=1)  # code: RegressTree depth 5 -> 16 leaves
        # chosen: None = range of the training targets (CoRe hard-codes 30 MTL / 100 AQA-7)
        score_range: float | None = option(None, min=0, min_open=True)
        n_exemplars: int = option(10, min=1)  # code: num_voting = 10
        # code (CoRe/TPT): softmax NLL over intervals; "bce" = one-vs-rest (FSPN paper)
        interval_loss: Literal["nll", "bce"] = "nll"
        exemplar_seed: int | None = None  # chosen: None = drawn from the fit seed; an int pins the test lists

    options: Options

    explanation_keys: ClassVar[tuple[str, ...]] = ()  # which of encode()'s auxiliaries are explanations
    keeps_training_data: ClassVar[bool] = True  # exemplars are training videos

    # -- what a subclass implements ------------------------------------------------------------------------
    @abstractmethod
    def encode(self, model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Per-video representation (B, ...) and per-video explanations/auxiliaries (dict of (B, ...))."""

    @abstractmethod
    def regress_pair(
        self, model: nn.Module, exemplar: torch.Tensor, query: torch.Tensor, exemplar_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (P, n_intervals), offsets (P, n_intervals)) for Δ = y_query − y_exemplar."""

    def auxiliary_loss(self, aux: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Extra per-video loss on the encoder's auxiliaries (TPT's ranking/sparsity). Default: none."""
        return torch.zeros(()), {}

    # -- shared machinery ----------------------------------------------------------------------------------
    def prepare(self, train: SequenceData, generator: torch.Generator) -> None:
        kind, keys = group_keys(train)
        self.intervals = GroupIntervals.from_training(
            train.y, keys, self.options.n_intervals, self.options.score_range
        )
        self.pool = ExemplarPool(train.ids, keys, kind)
        draw = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self._train_rng = np.random.default_rng(draw)
        self._window_generator = torch.Generator().manual_seed(draw)
        seed = self.options.exemplar_seed
        self.exemplar_seed = draw if seed is None else int(seed)
        self._train_batcher = self.batcher(train)
        self._train_y = torch.as_tensor(train.y, dtype=torch.float32)

    def exemplar_lists(self, data: SequenceData) -> np.ndarray:
        """The (N, n_exemplars) training rows each video of ``data`` is compared with at prediction (−1 = none)."""
        kind, keys = group_keys(data)
        if kind != self.pool.kind:
            raise ValueError(
                f"head {self.name!r}: exemplars were grouped by {self.pool.kind!r} in training but the data to "
                f"score is grouped by {kind!r} (difficulty > groups > all)"
            )
        return self.pool.test_lists(data.ids, keys, int(self.options.n_exemplars), self.exemplar_seed)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        rows = batch.index.cpu().numpy()
        partners = self.pool.sample_train(rows, self._train_rng)
        other = self._train_batcher.batch(partners, train=True, generator=self._window_generator).to(
            batch.x.device
        )
        x, mask = _stack_padded([batch.x, other.x], [batch.mask, other.mask])
        reps, aux = self.encode(model, x, mask)
        n = len(rows)
        query, exemplar = reps[:n], reps[n:]
        y_q, y_e = batch.y, other.y
        logits_a, offsets_a = self.regress_pair(model, exemplar, query, y_e)
        logits_b, offsets_b = self.regress_pair(model, query, exemplar, y_q)
        leaf, target = self.intervals.assign(torch.cat([y_q - y_e, y_e - y_q]).cpu())
        cls, reg = group_regression_loss(
            torch.cat([logits_a, logits_b]),
            torch.cat([offsets_a, offsets_b]),
            leaf.to(x.device),
            target.to(x.device),
            self.options.interval_loss,
        )
        extra, parts = self.auxiliary_loss(aux, mask)
        total = cls + reg + extra.to(x.device)
        return total, {"cls": float(cls.detach()), "reg": float(reg.detach()), **parts}

    @torch.no_grad()
    def _predict(self, batcher: Batcher) -> Prediction:
        """Encode the training videos once (deterministic windows), then score ``batcher.data`` against them."""
        was_training = self.model.training
        self.model.eval()
        reps = []
        for batch in self._train_batcher.iterate(batch_size=self.options.batch_size, train=False):
            batch = batch.to(self.device)
            reps.append(self.encode(self.model, batch.x, batch.mask)[0])
        self._exemplar_reps = torch.cat(reps)
        self._lists = torch.as_tensor(self.exemplar_lists(batcher.data))
        try:
            return super()._predict(batcher)
        finally:
            self._exemplar_reps = self._lists = None
            self.model.train(was_training)

    def predict_batch(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        query, aux = self.encode(model, batch.x, batch.mask)
        lists = self._lists[batch.index.cpu()].to(batch.x.device)  # (B, E)
        valid = lists >= 0
        rows = lists.clamp(min=0)
        b, e = lists.shape
        exemplar = self._exemplar_reps[rows.reshape(-1)]
        exemplar_y = self._train_y.to(batch.x.device)[rows.reshape(-1)]
        query_rep = query.repeat_interleave(e, dim=0)
        logits, offsets = self.regress_pair(model, exemplar, query_rep, exemplar_y)
        leaf = logits.argmax(1)
        delta = self.intervals.decode(leaf, offsets.gather(1, leaf[:, None]).squeeze(1)).view(b, e)
        votes = (exemplar_y.view(b, e) + delta) * valid
        prediction = votes.sum(1) / valid.sum(1).clamp(min=1)
        explain = {k: v for k, v in aux.items() if k in self.explanation_keys}
        explain.update(exemplar_index=lists.to(torch.float32), exemplar_delta=delta.masked_fill(~valid, 0.0))
        return prediction, explain

    def extra_state(self) -> dict[str, Any]:
        return {
            **super().extra_state(),
            "intervals": self.intervals.bounds,
            "exemplar_seed": self.exemplar_seed,
        }

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        kind, keys = group_keys(self.train_data)
        self.intervals = GroupIntervals(extra["intervals"])
        self.pool = ExemplarPool(self.train_data.ids, keys, kind)
        self.exemplar_seed = extra["exemplar_seed"]
        self._train_batcher = self.batcher(self.train_data)
        self._train_y = torch.as_tensor(self.train_data.y, dtype=torch.float32)


def _stack_padded(xs: list[torch.Tensor], masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate batches along the batch axis, zero-padding the clip axis to the longest."""
    length = max(x.shape[1] for x in xs)
    xs = [F.pad(x, (0, 0) * (x.dim() - 2) + (0, length - x.shape[1])) for x in xs]
    masks = [F.pad(m, (0, length - m.shape[1])) for m in masks]
    return torch.cat(xs), torch.cat(masks)
