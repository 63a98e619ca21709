"""In-memory sequence data for stage two, and batching with padding masks and clip windows.

Everything a head trains on lives here as padded tensors built once; a batch is an index gather, so an epoch over
Fis-V costs microseconds of data handling. Training draws a random contiguous window of clips per video (as GDLT,
the weight-score decoder and ACTION-NET do); evaluation windows are deterministic (the whole video, or its centre).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SequenceData:
    """Videos as (T_i, ...) feature sequences with normalised targets.

    ``y`` is in the head's working units (see ``train.labels``): heads never see raw scores, and the framework
    maps predictions back. ``extra`` holds further feature kinds (ACTION-NET's static stream, TSA's maps or
    tube masks) keyed by role; ``difficulty``, ``groups`` and ``judges`` are there when the dataset has them.
    """

    ids: list[str]
    x: list[np.ndarray]
    y: np.ndarray
    extra: dict[str, list[np.ndarray]] = field(default_factory=dict)
    difficulty: np.ndarray | None = None
    groups: np.ndarray | None = None
    judges: np.ndarray | None = None
    # raw score (and difficulty) -> working units; for heads that compute a raw score themselves (MUSDL)
    to_working: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.x) != n or len(self.y) != n:
            raise ValueError(f"SequenceData: {n} ids, {len(self.x)} sequences, {len(self.y)} targets")
        for role, seqs in self.extra.items():
            if len(seqs) != n:
                raise ValueError(f"SequenceData: extra {role!r} has {len(seqs)} sequences for {n} videos")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> tuple[int, ...]:
        return tuple(self.x[0].shape[1:])

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.x], dtype=np.int64)

    def subset(self, indices) -> SequenceData:
        idx = np.asarray(list(indices), dtype=np.int64)

        def pick(array):
            return None if array is None else array[idx]

        return SequenceData(
            ids=[self.ids[i] for i in idx],
            x=[self.x[i] for i in idx],
            y=self.y[idx],
            extra={k: [v[i] for i in idx] for k, v in self.extra.items()},
            difficulty=pick(self.difficulty),
            groups=pick(self.groups),
            judges=pick(self.judges),
            to_working=self.to_working,
        )


@dataclass
class Batch:
    """A padded mini-batch. ``mask`` is True on real clips; ``index`` points back into the SequenceData."""

    x: torch.Tensor  # (B, T, ...)
    mask: torch.Tensor  # (B, T) bool
    y: torch.Tensor  # (B,)
    index: torch.Tensor  # (B,) long
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # role -> (B, T_role, ...)
    extra_mask: dict[str, torch.Tensor] = field(default_factory=dict)  # role -> (B, T_role) bool
    difficulty: torch.Tensor | None = None
    judges: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            x=move(self.x),
            mask=move(self.mask),
            y=move(self.y),
            index=move(self.index),
            extra={k: move(v) for k, v in self.extra.items()},
            extra_mask={k: move(v) for k, v in self.extra_mask.items()},
            difficulty=move(self.difficulty),
            judges=move(self.judges),
        )


class _Padded:
    """One feature role padded once to (N, T_max, ...) with its lengths."""

    def __init__(self, sequences: list[np.ndarray]) -> None:
        self.lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        t_max = int(self.lengths.max())
        out = np.zeros((len(sequences), t_max, *sequences[0].shape[1:]), dtype=np.float32)
        for i, s in enumerate(sequences):
            out[i, : len(s)] = s
        self.values = torch.from_numpy(out)

    def window(
        self, index: torch.Tensor, starts: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index``, clips [start, start+size), zero-filled and masked past each video's end.

        Rows are zero past their length already, so a window is plain slicing: one ``index_select`` when every
        window starts at 0 (evaluation, whole videos), else one contiguous slice per row — far cheaper than an
        advanced-indexing gather of (B, size) positions.
        """
        valid = (starts[:, None] + torch.arange(size)[None, :]) < self.lengths[index][:, None]
        t_max = self.values.shape[1]
        if size <= t_max and not bool(starts.any()):
            return self.values.index_select(0, index)[:, :size], valid
        out = self.values.new_zeros((len(index), size, *self.values.shape[2:]))
        for row, (i, start) in enumerate(zip(index.tolist(), starts.tolist(), strict=True)):
            stop = min(start + size, t_max)
            if stop > start:
                out[row, : stop - start] = self.values[i, start:stop]
        return out, valid


class Batcher:
    """Turns row indices of a SequenceData into Batches.

    ``window``: clips per video at training time (None = whole videos); ``test_window``: ``"full"`` (whole
    videos, padded to the longest in the batch) or an int (the centre window of that many clips, the papers'
    deterministic test crop). ``extra_windows`` sets the same per extra role; ``"aligned"`` makes a role share the
    primary stream's clip window (e.g. per-clip tube masks).
    """

    def __init__(
        self,
        data: SequenceData,
        window: int | None = None,
        test_window: int | str = "full",
        extra_windows: dict[str, int | str | None] | None = None,
    ) -> None:
        self.data = data
        self.window = window
        self.test_window = test_window
        self.extra_windows = extra_windows or {}
        self._primary = _Padded(data.x)
        self._extra = {role: _Padded(seqs) for role, seqs in data.extra.items()}
        self._y = torch.as_tensor(data.y, dtype=torch.float32)
        self._difficulty = (
            None if data.difficulty is None else torch.as_tensor(data.difficulty, dtype=torch.float32)
        )
        self._judges = None if data.judges is None else torch.as_tensor(data.judges, dtype=torch.float32)

    def batch(self, indices, *, train: bool, generator: torch.Generator | None = None) -> Batch:
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        x, mask, starts = self._cut(self._primary, index, self.window, train, generator)
        extra, extra_mask = {}, {}
        for role, padded in self._extra.items():
            rule = self.extra_windows.get(role)
            if rule == "aligned":
                size = x.shape[1]
                extra[role], extra_mask[role] = padded.window(index, starts, size)
            else:
                extra[role], extra_mask[role], _ = self._cut(padded, index, rule, train, generator)
        return Batch(
            x=x,
            mask=mask,
            y=self._y[index],
            index=index,
            extra=extra,
            extra_mask=extra_mask,
            difficulty=None if self._difficulty is None else self._difficulty[index],
            judges=None if self._judges is None else self._judges[index],
        )

    def _cut(self, padded: _Padded, index, train_window, train, generator):
        lengths = padded.lengths[index]
        if train and train_window:
            size = int(train_window)
            room = (lengths - size).clamp(min=0)
            starts = (
                (torch.rand(len(index), generator=generator) * (room + 1).to(torch.float32)).floor().long()
            )
        else:
            test_window = self.test_window if not train else None
            if isinstance(test_window, int):
                size = test_window
                starts = ((lengths - size).clamp(min=0)) // 2
            else:
                size = int(lengths.max())
                starts = torch.zeros(len(index), dtype=torch.long)
        x, mask = padded.window(index, starts, size)
        return x, mask, starts

    def iterate(
        self,
        *,
        batch_size: int,
        train: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ):
        """Batches over all rows: shuffled (with ``generator``) for training, in order for evaluation."""
        n = len(self.data)
        order = torch.randperm(n, generator=generator) if train else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size].numpy(), train=train, generator=generator)
