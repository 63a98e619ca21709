"""Model-side packing: clips of different videos (and streams) cut into full batches, outputs routed back.

Short videos do not leave the model half-idle: a batch takes clips across video boundaries, and each video
collects its outputs until all its clips are encoded.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np
import torch

from aqa_pipeline.extract.source import ClipItem

SCENE, ACTOR = "scene", "actor"  # the preset's clips; the same clips cut around the athlete


@dataclass
class PendingVideo:
    """A video whose clips are (partly) in flight: outputs arrive batch by batch, in clip order, per stream."""

    item: ClipItem
    expected: dict[str, int]  # stream → number of clips
    outputs: dict[str, dict[str, list[torch.Tensor]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )  # stream → kind → parts
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    logits: list[torch.Tensor] = field(default_factory=list)
    crop_features: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return all(self.received[stream] == n for stream, n in self.expected.items())

    def per_clip(self, stream: str, kind: str) -> np.ndarray:
        """All clips' outputs of ``kind`` in clip order (repeated clips expanded again)."""
        return torch.cat(self.outputs[stream][kind]).numpy()[self.item.clip_inverse]


class ClipQueue:
    """Clips waiting for the model, keyed (video id, stream), in arrival order; ``take`` cuts a batch across
    video and stream boundaries."""

    def __init__(self) -> None:
        self._parts: deque[tuple[tuple[str, str], torch.Tensor]] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, key: tuple[str, str], clips: torch.Tensor) -> None:
        self._parts.append((key, clips))
        self._count += len(clips)

    def take(self, count: int) -> list[tuple[tuple[str, str], torch.Tensor]]:
        taken = []
        while count > 0 and self._parts:
            key, clips = self._parts.popleft()
            if len(clips) > count:
                self._parts.appendleft((key, clips[count:]))
                clips = clips[:count]
            taken.append((key, clips))
            count -= len(clips)
            self._count -= len(clips)
        return taken
