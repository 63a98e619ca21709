"""The baselines every AQA table carries: pooled SVR / ridge, the "I3D+MLP" head, and LSTM / BiLSTM.

SVR and ridge follow the recipe of heads-reference §8 (pool over time, scaler fitted on train only, linear
kernel, C / alpha chosen by inner cross-validation on the training videos). The MLP is the pooled-feature
regressor papers call "I3D+MLP"; the LSTMs are the sequence baselines of the ACTION-NET and MS-LSTM papers.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from aqa_pipeline.heads.base import EpochCallback, Head, History, PooledInputHead, Prediction, TorchHead
from aqa_pipeline.heads.options import dropout_rate, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.heads.search import OPTIMISER_SPACE, Dimension, Integer, OneOf, Real
from aqa_pipeline.train.data import Batch, SequenceData


def pool_sequences(sequences: list[np.ndarray], pooling: str) -> np.ndarray:
    """(N, D) time-pooled features: ``mean``, ``max`` or ``mean+std`` (concatenated)."""
    flat = [s.reshape(len(s), -1) for s in sequences]
    if pooling == "mean":
        return np.stack([s.mean(0) for s in flat])
    if pooling == "max":
        return np.stack([s.max(0) for s in flat])
    if pooling == "mean+std":
        return np.stack([np.concatenate([s.mean(0), s.std(0)]) for s in flat])
    raise ValueError(f"unknown pooling {pooling!r}: mean, max or mean+std")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real clips only: (B, T, D), (B, T) -> (B, D)."""
    weights = mask.to(x.dtype)
    total = torch.bmm(weights.unsqueeze(1), x).squeeze(1)  # no (B, T, D) temporary
    return total / weights.sum(1, keepdim=True).clamp(min=1.0)


@dataclass
class FittedPooledModel:
    """A fitted scaler + linear or kernel regressor as plain arrays: what the checkpoint holds (no pickled
    estimator), and the one prediction path, so a saved model predicts exactly as it did when trained."""

    mean: np.ndarray
    scale: np.ndarray
    intercept: float
    coef: np.ndarray | None = None  # linear models
    support: np.ndarray | None = (
        None  # kernel SVR: support vectors (scaled space) and their dual coefficients
    )
    dual: np.ndarray | None = None
    kernel: str = "linear"
    kernel_params: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipeline) -> FittedPooledModel:
        scaler, estimator = pipeline.steps[0][1], pipeline.steps[-1][1]
        common = dict(
            mean=scaler.mean_, scale=scaler.scale_, intercept=float(np.ravel(estimator.intercept_)[0])
        )
        kernel = getattr(estimator, "kernel", "linear")
        if kernel == "linear":
            return cls(**common, coef=np.ravel(estimator.coef_))
        params = {
            "gamma": float(estimator._gamma),
            "degree": int(estimator.degree),
            "coef0": float(estimator.coef0),
        }
        return cls(**common, support=estimator.support_vectors_, dual=np.ravel(estimator.dual_coef_),
                   kernel=kernel, kernel_params=params)  # fmt: skip

    def predict(self, pooled: np.ndarray) -> np.ndarray:
        scaled = (pooled - self.mean) / self.scale
        if self.coef is not None:
            return scaled @ self.coef + self.intercept
        from sklearn.metrics.pairwise import pairwise_kernels

        params = {k: v for k, v in self.kernel_params.items() if k in _KERNEL_PARAMS[self.kernel]}
        return (
            pairwise_kernels(scaled, self.support, metric=self.kernel, **params) @ self.dual + self.intercept
        )


_KERNEL_PARAMS = {"rbf": {"gamma"}, "poly": {"gamma", "degree", "coef0"}, "sigmoid": {"gamma", "coef0"}}


class _SklearnPooledHead(Head):
    """Time pooling → StandardScaler (fit on train) → estimator with its regularisation chosen by inner CV."""

    uses_validation: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Options(Head.Options):
        pooling: Literal["mean", "max", "mean+std"] = "mean"
        inner_cv: int = option(5, min=2)

    options: Options

    @abstractmethod
    def _search(self):
        """The estimator and its grid of regularisation values for the inner cross-validation."""

    def fit(
        self,
        train: SequenceData,
        val: SequenceData | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
        on_epoch: EpochCallback | None = None,
    ) -> History:
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        started = time.perf_counter()
        estimator, grid = self._search()
        pipeline = make_pipeline(StandardScaler(), estimator)
        search = GridSearchCV(
            pipeline,
            {f"{pipeline.steps[-1][0]}__{k}": v for k, v in grid.items()},
            cv=KFold(self.options.inner_cv, shuffle=True, random_state=seed),
            scoring="neg_mean_squared_error",
        )
        search.fit(pool_sequences(train.x, self.options.pooling), train.y)
        self.model_ = FittedPooledModel.from_pipeline(search.best_estimator_)
        self.best_params_ = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
        return History(seconds=time.perf_counter() - started)

    def predict(self, data: SequenceData) -> Prediction:
        return Prediction(self.model_.predict(pool_sequences(data.x, self.options.pooling)))

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.options),
            "model": asdict(self.model_),
            "best_params": self.best_params_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options, self.best_params_ = self.parse_options(state["config"]), state["best_params"]
        self.model_ = FittedPooledModel(**state["model"])


@register_head("svr")
class SVRHead(_SklearnPooledHead):
    """Linear-kernel SVR on pooled features (Parmar & Morris 2017's C3D-SVR recipe, with inner-CV C and ε)."""

    @dataclass(frozen=True)
    class Options(_SklearnPooledHead.Options):
        kernel: Literal["linear", "rbf", "poly", "sigmoid"] = "linear"  # paper
        C: list[float] = option([0.001, 0.01, 0.1, 1.0, 10.0])  # chosen: grid searched by inner CV
        epsilon: list[float] = option([0.01, 0.05, 0.1])  # chosen (targets are in [0, 1] working units)

    options: Options

    def _search(self):
        from sklearn.svm import SVR

        return SVR(kernel=self.options.kernel), {"C": self.options.C, "epsilon": self.options.epsilon}


@register_head("ridge")
class RidgeHead(_SklearnPooledHead):
    """Ridge regression on pooled features; alpha by inner CV."""

    @dataclass(frozen=True)
    class Options(_SklearnPooledHead.Options):
        alpha: list[float] = option([0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0])  # chosen

    options: Options

    def _search(self):
        from sklearn.linear_model import Ridge

        return Ridge(), {"alpha": self.options.alpha}


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: tuple[int, ...], dropout: float, out: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.ReLU(), nn.Dropout(dropout)]
            dim = width
        layers.append(nn.Linear(dim, out))
        self.net = nn.Sequential(*layers)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


@register_head("mlp")
class MLPHead(PooledInputHead):
    """ "I3D+MLP": masked mean over clips, then an MLP regressor trained with MSE."""

    # What --tune explores: the optimiser, dropout and epochs (the widths are the MUSDL regressor's).
    search_space: ClassVar[dict[str, Dimension]] = {
        **OPTIMISER_SPACE,
        "dropout": Real(0.0, 0.7),
        "epochs": Integer(50, 200),
    }

    @dataclass(frozen=True)
    class Options(PooledInputHead.Options):
        hidden: list[int] = option([256, 128])  # code: the MUSDL/USDL regressor widths (1024→256→128)
        dropout: float = dropout_rate(0.5)  # chosen
        epochs: int = 150  # chosen (selection on validation)
        lr: float = 1e-3  # chosen
        weight_decay: float = 1e-4  # chosen
        eval_every: int = 5

    options: Options

    def build(self, train: SequenceData) -> nn.Module:
        return _MLP(int(np.prod(train.dim)), tuple(self.options.hidden), self.options.dropout)

    def _forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(masked_mean(batch.x.flatten(2), batch.mask)).squeeze(-1)

    def loss(self, model: nn.Module, batch: Batch):
        loss = nn.functional.mse_loss(self._forward(model, batch), batch.y)
        return loss, {"mse": float(loss.detach())}

    def predict_batch(self, model: nn.Module, batch: Batch):
        return self._forward(model, batch), {}


class _LSTMRegressor(nn.Module):
    def __init__(self, dim: int, hidden: int, layers: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        if self.lstm.bidirectional:
            final = torch.cat([hidden[-2], hidden[-1]], dim=-1)  # last layer, both directions
        else:
            final = hidden[-1]
        return self.out(final).squeeze(-1)


@register_head("lstm")
class LSTMHead(TorchHead):
    """LSTM over the clip sequence; the last hidden state (of each video's real length) regresses the score."""

    bidirectional: ClassVar[bool] = False
    # What --tune explores (BiLSTM too): the optimiser, width, dropout, training window and epochs.
    search_space: ClassVar[dict[str, Dimension]] = {
        **OPTIMISER_SPACE,
        "hidden": OneOf((64, 128, 256)),
        "dropout": Real(0.0, 0.5),
        "window": OneOf((16, 32, 64)),
        "epochs": Integer(10, 40),
    }

    @dataclass(frozen=True)
    class Options(TorchHead.Options):
        hidden: int = option(256, min=1)  # paper (ACTION-NET's LSTM baseline width; MS-LSTM uses 256 too)
        layers: int = option(1, min=1)  # chosen
        dropout: float = dropout_rate(0.3)  # chosen
        epochs: int = 20  # chosen: the 2-core budget of a minute per fit on Fis-V (selection on validation)
        lr: float = 1e-3  # chosen
        weight_decay: float = 1e-5  # chosen
        window: int | None = 32  # chosen: random 32-clip windows at train time (whole videos at evaluation)
        test_window: Literal["full"] | int = "full"
        eval_every: int = 2
        grad_clip: float | None = 1.0

    options: Options

    def build(self, train: SequenceData) -> nn.Module:
        return _LSTMRegressor(
            int(np.prod(train.dim)),
            self.options.hidden,
            self.options.layers,
            self.bidirectional,
            self.options.dropout,
        )

    def loss(self, model: nn.Module, batch: Batch):
        loss = nn.functional.mse_loss(model(batch.x.flatten(2), batch.mask), batch.y)
        return loss, {"mse": float(loss.detach())}

    def predict_batch(self, model: nn.Module, batch: Batch):
        return model(batch.x.flatten(2), batch.mask), {}


@register_head("bilstm")
class BiLSTMHead(LSTMHead):
    """Bidirectional LSTM: final forward and backward states concatenated."""

    bidirectional: ClassVar[bool] = True
