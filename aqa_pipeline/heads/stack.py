"""``stack``: several registered heads blended by a non-negative linear model fitted on out-of-fold predictions.

Blending is only honest if the blend weights never see a prediction made by a model that trained on the same
video. So, inside whatever training videos the protocol hands this head (one outer fold's), each member is
cross-validated (``inner_folds``) to get an out-of-fold prediction for every training video; the blend
(``ŷ = b + Σ_m w_m ŷ_m`` with w ≥ 0, by NNLS on centred predictions) is fitted on those alone; then every member
is refitted on all the training videos for prediction. The outer protocol scores the stack on videos none of this
saw: nested CV. Members that select epochs get a validation split carved from their own training part.

``blend="mean"`` fits nothing: the stack predicts the members' plain average, so it needs no inner CV and costs
only its members' own fits (an inner CV of a neural member costs ``inner_folds`` more fits of it per outer fold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from aqa_pipeline.heads.base import Head, History, Prediction
from aqa_pipeline.heads.options import OptionError, option
from aqa_pipeline.heads.registry import get_head, head_names, register_head
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.protocol import carve_validation


@register_head("stack")
class StackHead(Head):
    """Non-negative blend of ``members`` (comma-separated head names) fitted on their out-of-fold predictions,
    or their plain average (``blend="mean"``)."""

    uses_validation: ClassVar[bool] = False  # it cross-validates its members itself

    @dataclass(frozen=True)
    class Options(Head.Options):
        members: str = "ridge,mlp"  # chosen: any heads without extra feature kinds
        # head name → its options, e.g. {"weight-score": {"epochs": 10}}
        member_options: dict[str, dict[str, Any]] = option({})
        # chosen: nnls = weights fitted on inner out-of-fold predictions; mean = the plain average, nothing fitted
        blend: Literal["nnls", "mean"] = "nnls"
        inner_folds: int = option(5, min=2)  # chosen: out-of-fold predictions for the nnls blend
        # members that select epochs hold out this share of their training part; None: each member's default
        val_fraction: float | None = option(None, min=0, max=0.5)

        def __post_init__(self) -> None:
            super().__post_init__()
            unknown = [n for n in self.names() if n not in head_names() or n == "stack"]
            if len(self.names()) < 2 or unknown:
                raise OptionError(
                    f"option members={self.members!r}: must be at least two of {head_names()} (not stack)"
                )
            for name in self.names():
                if get_head(name).required_roles:
                    raise OptionError(
                        f"option members: {name} needs extra feature kinds {get_head(name).required_roles}"
                    )
                self.member(name)  # the members' options checked now, before any data

        def names(self) -> list[str]:
            return [n.strip() for n in self.members.split(",") if n.strip()]

        def member(self, name: str) -> Head:
            return get_head(name)(**self.member_options.get(name, {}))

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.members: list[Head] = []
        self.weights = np.zeros(len(self.names))
        self.intercept = 0.0

    @classmethod
    def tuning_summary(cls, values) -> str:
        if cls.parse_options(values).blend == "mean":
            return "the members' plain average, nothing fitted on it; each member chooses its own settings"
        return "blend weights fitted on the members' inner out-of-fold predictions in the training videos"

    @property
    def names(self) -> list[str]:
        return self.options.names()

    def _fit_member(self, name: str, data: SequenceData, seed: int, **options) -> Head:
        member = self.options.member(name)
        val = None
        fraction = self.options.val_fraction
        fraction = member.default_val_fraction if fraction is None else fraction
        if member.selects_epochs(self.options.member_options.get(name, {})) and fraction > 0:
            fit, held = carve_validation(np.arange(len(data)), fraction, np.random.default_rng(seed))
            data, val = data.subset(fit), data.subset(held)
        member.fit(data, val, seed=seed, **options)
        return member

    def out_of_fold(self, train: SequenceData, seed: int, **options) -> np.ndarray:
        """(videos, members) predictions, each made by a member that did not train on that video."""
        folds = np.array_split(np.random.default_rng(seed).permutation(len(train)), self.options.inner_folds)
        predictions = np.zeros((len(train), len(self.names)))
        for held in folds:
            rest = np.setdiff1d(np.arange(len(train)), held)
            for m, name in enumerate(self.names):
                member = self._fit_member(name, train.subset(rest), seed, **options)
                predictions[held, m] = member.predict(train.subset(held)).y
        return predictions

    def fit(
        self, train: SequenceData, val: SequenceData | None = None, *, seed: int = 0, **options
    ) -> History:
        if self.options.blend == "mean":
            self.weights, self.intercept = np.full(len(self.names), 1 / len(self.names)), 0.0
        else:
            self._fit_blend(train, seed, **options)
        self.members = [self._fit_member(name, train, seed, **options) for name in self.names]
        return History(best_epoch=None)

    def _fit_blend(self, train: SequenceData, seed: int, **options) -> None:
        from scipy.optimize import nnls

        oof = self.out_of_fold(train, seed, **options)
        centre_x, centre_y = oof.mean(0), float(np.mean(train.y))
        self.weights, _ = nnls(oof - centre_x, np.asarray(train.y, dtype=np.float64) - centre_y)
        self.intercept = centre_y - float(self.weights @ centre_x)

    def predict(self, data: SequenceData) -> Prediction:
        if not self.members:
            raise RuntimeError("head 'stack' is not fitted")
        stacked = np.stack([member.predict(data).y for member in self.members], axis=1)
        return Prediction((stacked @ self.weights + self.intercept).astype(np.float32))

    def to_device(self, device: str) -> StackHead:
        for member in self.members:
            member.to_device(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.options),
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "members": [member.state_dict() for member in self.members],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options = self.parse_options(state["config"])
        self.weights, self.intercept = np.asarray(state["weights"]), float(state["intercept"])
        self.members = []
        for name, member_state in zip(self.names, state["members"], strict=True):
            member = self.options.member(name)
            member.load_state_dict(member_state)
            self.members.append(member)
