"""Seed ensembles (``aqa-fit --ensemble S``): S copies of one head trained with different seeds, averaged.

Averaging seeds is the cheapest variance reduction there is for heads whose CV scores move from seed to seed
(GDLT's CV TES spread 0.30–0.46 across seeds on Fis-V). Every member sees the same training and validation videos;
only its seed differs. The prediction is the members' mean, and so are the explanations, so that the report's
sums stay exact: an array read through weights is averaged weighted by them (the weight-score decoder's clip scores
by the clip weights, GDLT's attention rows by the grade responses), so mean weight × averaged value is the members'
mean contribution; every other array is a plain mean. Heads that explain by exemplar lists (TPT, CoRe, FSPN) keep
the first member's lists, which cannot be averaged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from aqa_pipeline.heads.base import Head, History, Prediction
from aqa_pipeline.train.data import SequenceData

MEMBER_SEED_STEP = 1000  # member k trains with seed + 1000·k, apart from --seeds' seed, seed + 1, ...
WEIGHTED_BY = {
    "clip_scores": "weights",
    "attention": "grades",
}  # explanation array → the weights it is read with


class SeedEnsemble:
    """``size`` members of ``head_cls``; fits, predicts and saves like a single head."""

    def __init__(self, head_cls: type[Head], size: int, **options: Any) -> None:
        if size < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {size}")
        self.head_cls, self.size, self.options = head_cls, size, options
        self.members: list[Head] = [head_cls(**options) for _ in range(size)]

    @property
    def name(self) -> str:
        return self.head_cls.name

    def fit(
        self, train: SequenceData, val: SequenceData | None = None, *, seed: int = 0, **options
    ) -> History:
        """Train every member; the history is the first member's, with the members' seconds summed."""
        histories = [
            member.fit(train, val, seed=seed + MEMBER_SEED_STEP * k, **options)
            for k, member in enumerate(self.members)
        ]
        return dataclasses.replace(histories[0], seconds=sum(h.seconds for h in histories))

    def predict(self, data: SequenceData) -> Prediction:
        predictions = [member.predict(data) for member in self.members]
        y = np.mean([p.y for p in predictions], axis=0)
        if predictions[0].explanations is None or hasattr(self.members[0], "exemplar_lists"):
            return Prediction(y, predictions[0].explanations)
        videos = zip(*(p.explanations for p in predictions), strict=True)
        return Prediction(y, [average_explanations(list(members)) for members in videos])

    def state_dict(self) -> dict[str, Any]:
        return {"ensemble": [member.state_dict() for member in self.members]}

    def to_device(self, device: str) -> SeedEnsemble:
        for member in self.members:
            member.to_device(device)
        return self

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members = [self.head_cls(**self.options) for _ in state["ensemble"]]
        self.size = len(self.members)
        for member, member_state in zip(self.members, state["ensemble"], strict=True):
            member.load_state_dict(member_state)


def average_explanations(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One video's explanation from its members' (see the module docstring for the weighting)."""
    averaged = {}
    for name in members[0]:
        stack = np.stack([m[name] for m in members]).astype(np.float64)
        weight_name = WEIGHTED_BY.get(name)
        if weight_name in members[0]:
            weights = np.stack([m[weight_name] for m in members]).astype(np.float64)
            weights = weights.reshape(weights.shape + (1,) * (stack.ndim - weights.ndim))
            averaged[name] = (weights * stack).sum(0) / np.clip(weights.sum(0), 1e-12, None)
        else:
            averaged[name] = stack.mean(0)
    return averaged


def build_head(head_cls: type[Head], options: dict[str, Any], ensemble: int = 1) -> Head | SeedEnsemble:
    """One head, or a seed ensemble of ``ensemble`` members."""
    return SeedEnsemble(head_cls, ensemble, **options) if ensemble > 1 else head_cls(**options)


def restore_head(head_cls: type[Head], state: dict[str, Any]) -> Head | SeedEnsemble:
    """The saved head of a ``model.pt``, an ensemble when it was saved as one."""
    head = SeedEnsemble(head_cls, len(state["ensemble"])) if "ensemble" in state else head_cls()
    head.load_state_dict(state)
    return head
