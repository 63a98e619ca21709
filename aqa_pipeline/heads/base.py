"""What a scoring head is, and the training loop every neural head shares.

A head follows scikit-learn's small API: ``fit(train, val)`` then ``predict(data)``, with its hyper-parameters in
``self.options`` (an instance of the head's frozen dataclass ``Options``, which declares each option's type, range
and default). Neural heads subclass ``TorchHead`` and only say how to build the module, its loss, and how to
predict a batch; the loop (windows, optimiser, epoch selection on the validation set, determinism, progress bar)
lives here once.

Model selection only ever looks at ``val``. The framework decides what ``val`` is: a split carved from train by
default, the test split only under the clearly labelled paper protocol.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from aqa_pipeline.heads.options import HeadOptions, option, parse_options
from aqa_pipeline.heads.search import Dimension
from aqa_pipeline.train.data import Batch, Batcher, SequenceData
from aqa_pipeline.train.metrics import spearman

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Prediction:
    """Predicted scores in working units and, per video, what explains them (attention, clip weights, ...)."""

    y: np.ndarray
    explanations: list[dict[str, np.ndarray]] | None = None


@dataclass
class History:
    """Per-epoch training loss and (when evaluated) validation Spearman; ``best_epoch`` is what was kept."""

    train_loss: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
    val_spearman: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0


class Head(ABC):
    """Base of every head. ``Options`` holds the hyper-parameters with where they come from in comments."""

    name: ClassVar[str] = ""
    # Whether fit() should get a validation split carved from the training data (neural heads select their
    # epoch on it); heads that tune themselves by inner cross-validation (SVR, ridge) train on all of it.
    uses_validation: ClassVar[bool] = True
    # The share of training videos carved for that selection when the run does not set --val-fraction.
    default_val_fraction: ClassVar[float] = 0.15
    # Extra feature kinds a head can use: role -> store kinds accepted for it, first present wins.
    extra_roles: ClassVar[dict[str, tuple[str, ...]]] = {}
    required_roles: ClassVar[tuple[str, ...]] = ()

    @dataclass(frozen=True)
    class Options(HeadOptions):
        """The head's options (heads/options.py): types, ranges and defaults, checked before any data is loaded."""

    # The options ``aqa-fit --tune`` explores and their ranges (heads/search.py); empty: nothing to tune (the
    # closed-form heads tune themselves by inner cross-validation).
    search_space: ClassVar[dict[str, Dimension]] = {}
    options: Options

    def __init__(self, **options: Any) -> None:
        self.options = self.parse_options(options)

    @classmethod
    def parse_options(cls, values: Mapping[str, Any]) -> Options:
        """``values`` (``--set`` / ``--config`` options, or a saved model's) over this head's defaults."""
        return parse_options(cls.Options, values, cls.name)

    @classmethod
    def resolved_options(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every option, defaults filled in, as JSON values: what a run's config.json and fit journal record."""
        return json.loads(json.dumps(asdict(cls.parse_options(values)), default=str))

    @classmethod
    def selects_epochs(cls, values: Mapping[str, Any]) -> bool:
        """Whether a fit with these options picks its epoch on a validation split, which the protocol then
        carves from the training videos; otherwise the head trains on all of them."""
        return cls.uses_validation

    @classmethod
    def tuning_summary(cls, values: Mapping[str, Any]) -> str:
        """How a head that carves no validation split chooses its own settings, for ``metrics.json`` → selection."""
        return "inner cross-validation on the training videos"

    @classmethod
    def adapt_inputs(cls, data: SequenceData, source, *, primary: str, options: Options) -> SequenceData:
        """Turn loaded store features into what the head consumes (e.g. boxes into tube masks). ``source`` is
        the FeatureSet they came from (provenance, times), ``primary`` its main kind, ``options`` the head's
        resolved options. Default: as loaded."""
        return data

    @abstractmethod
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
        """Train; ``on_epoch(epoch, {"train_loss": ..., "val_spearman": ...})`` is the experiment-tracking hook."""

    @abstractmethod
    def predict(self, data: SequenceData) -> Prediction: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to predict again (weights, fitted scalers, exemplar pools)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def to_device(self, device: str) -> Head:
        """Where ``predict`` runs (a restored head starts on the CPU); heads without a torch model ignore it."""
        return self


class SubnormalsFlushed(contextlib.ContextDecorator):
    """Treat subnormal floats (|x| < 1.2e-38) as zero while a neural head trains or predicts.

    Why: peaked attention (weight-score's queries start at std 5) fills its probabilities and their gradients
    with subnormals, which the CPU handles in microcode, tens of times slower than normal floats. On Fis-V one
    weight-score epoch took 1.7x as long with them, 2.2x at the code's width (1 thread). Flushing changes values
    below 1.2e-38 only.

    torch's flag is per thread and has no getter: it is set on entry and put back to torch's default (off) when
    the outermost block exits (a fit that predicts inside does not switch it off half-way), unless
    ``for_this_process`` turned it on for good."""

    _depth = threading.local()
    process_wide: ClassVar[bool] = False

    def __enter__(self) -> SubnormalsFlushed:
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            torch.set_flush_denormal(True)
        self._depth.value = depth + 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth.value -= 1
        if self._depth.value == 0 and not self.process_wide:
            torch.set_flush_denormal(False)

    @classmethod
    def for_this_process(cls) -> None:
        """For processes that fit heads (aqa-fit, its workers, Ray fit tasks): set the flag before torch starts
        its intra-op threads, which inherit it from the thread that creates them; the block alone reaches only
        its own thread (with 2 threads it then flushed half the work), and stays on."""
        torch.set_flush_denormal(True)
        cls.process_wide = True


class TorchHead(Head):
    """A head that is an ``nn.Module`` plus its loss. Subclasses implement ``build``, ``loss``, ``predict_batch``."""

    @dataclass(frozen=True)
    class Options(Head.Options):
        epochs: int = option(100, min=1)
        batch_size: int = option(32, min=1)
        lr: float = option(1e-4, min=0, min_open=True)
        weight_decay: float = option(0.0, min=0)
        window: int | None = option(None, min=1)  # clips per video at train time (None = whole videos)
        # "full" or an int: deterministic centre window at evaluation
        test_window: Literal["full"] | int = option("full", min=1)
        # per extra role: int, None (whole) or "aligned" with the primary window
        extra_windows: dict[str, int | Literal["aligned"] | None] = option({})
        eval_every: int = option(1, min=1)  # epochs between validation evaluations (selection granularity)
        # "best_val" (epoch with best validation Spearman) or "last"
        selection: Literal["best_val", "last"] = "best_val"
        grad_clip: float | None = option(None, min=0, min_open=True)
        # chosen: None = every epoch of the schedule (as the papers train); N = stop once N validation checks in a
        # row found no better Spearman than the best so far (the kept epoch is the same; the tail is not trained)
        patience: int | None = option(None, min=1)
        # chosen: off = each paper's raw features. On: every clip feature standardised by the per-dimension mean
        # and std of the training clips (saved with the model), for any neural head on (T, D) features
        standardise_inputs: bool = False
        # chosen: "fp32" as the papers train. "bf16": each training batch's forward pass runs under torch.autocast
        # in bfloat16 (matrix products in bf16; weights, gradients, optimiser state and losses stay fp32), for
        # CPUs with native bf16 (AVX512-BF16 / AMX) and Ampere-or-later GPUs; validation and prediction stay fp32
        precision: Literal["fp32", "bf16"] = "fp32"

    options: Options

    keeps_training_data: ClassVar[bool] = False
    # Which axis of each per-video explanation array runs over clips, so that it can be cut back to the video's
    # real length: name -> axis of the primary stream, or (axis, extra role). Names not listed are kept whole.
    clip_axes: ClassVar[dict[str, int | tuple[int, str]]] = {}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.model: nn.Module | None = None
        self.train_data: SequenceData | None = None  # kept for heads that compare with training videos
        self.input_stats: tuple[np.ndarray, np.ndarray] | None = None  # (mean, std) with standardise_inputs

    @classmethod
    def selects_epochs(cls, values: Mapping[str, Any]) -> bool:
        """``selection="last"`` keeps the last epoch: a carved validation split would only cost training videos."""
        return cls.uses_validation and cls.parse_options(values).selection == "best_val"

    # -- what a head implements ----------------------------------------------------------------------------
    @abstractmethod
    def build(self, train: SequenceData) -> nn.Module:
        """Create the module for data shaped like ``train`` (its dims, extras, sizes)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of one batch and named parts of it for logging."""

    @abstractmethod
    def predict_batch(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B,) predictions in working units and per-video explanation tensors (B, ...), masked by the caller."""

    def prepare(self, train: SequenceData, generator: torch.Generator) -> None:
        """Hook run before training: exemplar pools, interval tables, label statistics. Default: nothing."""

    def configure_optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        """Adam with the configured lr / weight decay and no schedule; heads with a paper schedule override."""
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.options.lr, weight_decay=self.options.weight_decay
        )
        return optimizer, None

    def batcher(self, data: SequenceData) -> Batcher:
        return Batcher(data, self.options.window, self.options.test_window, self.options.extra_windows)

    # -- the shared loop ----------------------------------------------------------------------------------
    @SubnormalsFlushed()
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
        started = time.perf_counter()
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.input_stats = input_statistics(train.x) if self.options.standardise_inputs else None
        train, val = self._standardised(train), None if val is None else self._standardised(val)
        self.train_data = train
        self.device = torch.device(device)
        precision = self._training_precision()
        self.prepare(train, generator)
        model = self.build(train).to(self.device)
        self.model = model
        optimizer, scheduler = self.configure_optimizer(model)
        batcher = self.batcher(train)
        val_batcher = self.batcher(val) if val is not None else None  # padded once, not at every evaluation
        history = History()
        best_state, best_score = None, -np.inf
        epochs = int(self.options.epochs)
        bar = tqdm(range(1, epochs + 1), desc=f"{self.name}", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            total, count = 0.0, 0
            for batch in batcher.iterate(batch_size=self.options.batch_size, train=True, generator=generator):
                batch = batch.to(self.device)
                with precision:
                    loss, _parts = self.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.options.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), self.options.grad_clip)
                optimizer.step()
                if scheduler is not None and getattr(scheduler, "per_iteration", False):
                    scheduler.step()
                total += float(loss.detach()) * len(batch.index)
                count += len(batch.index)
            if scheduler is not None and not getattr(scheduler, "per_iteration", False):
                scheduler.step()
            history.train_loss.append(total / max(count, 1))
            if (
                val is not None
                and self.options.selection == "best_val"
                and (epoch % self.options.eval_every == 0 or epoch == epochs)
            ):
                rho = spearman(self._predict(val_batcher).y, val.y)
                history.val_epochs.append(epoch)
                history.val_spearman.append(rho)
                if rho > best_score:
                    best_score, best_state, history.best_epoch = rho, copy.deepcopy(model.state_dict()), epoch
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val_rho=f"{rho:.3f}")
            else:
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}")
            if on_epoch is not None:
                logged = {"train_loss": history.train_loss[-1]}
                if history.val_epochs and history.val_epochs[-1] == epoch:
                    logged["val_spearman"] = history.val_spearman[-1]
                on_epoch(epoch, logged)
            if self._out_of_patience(history):
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            history.best_epoch = epochs
        history.seconds = time.perf_counter() - started
        return history

    def _training_precision(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the training batches' forward passes (backward follows their casts), or nothing.
        Reused for every batch of the fit; checked once, before any training."""
        if self.options.precision == "fp32":
            return contextlib.nullcontext()
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16': {self.device} has no bfloat16 support; use precision='fp32'")
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _out_of_patience(self, history: History) -> bool:
        """``patience`` validation checks in a row since the best epoch: later epochs would not be kept."""
        patience = self.options.patience
        if patience is None or history.best_epoch is None:
            return False
        return sum(epoch > history.best_epoch for epoch in history.val_epochs) >= patience

    def predict(self, data: SequenceData) -> Prediction:
        if self.model is None:
            raise RuntimeError(f"head {self.name!r} is not fitted")
        return self._predict(self.batcher(self._standardised(data)))

    def _standardised(self, data: SequenceData) -> SequenceData:
        if self.input_stats is None:
            return data
        mean, std = self.input_stats
        return replace(data, x=[((x - mean) / std).astype(np.float32) for x in data.x])

    @torch.no_grad()
    @SubnormalsFlushed()
    def _predict(self, batcher: Batcher) -> Prediction:
        was_training = self.model.training
        model = self.model.eval()
        predictions, explanations = [], []
        for batch in batcher.iterate(batch_size=self.options.batch_size, train=False):
            batch = batch.to(self.device)
            y, explain = self.predict_batch(model, batch)
            predictions.append(y.float().cpu().numpy())
            lengths = {None: batch.mask.sum(1).cpu().numpy()}
            lengths.update({role: m.sum(1).cpu().numpy() for role, m in batch.extra_mask.items()})
            for i in range(len(batch.index)):
                explanations.append(
                    {
                        name: self._trim(name, value[i].float().cpu().numpy(), lengths, i)
                        for name, value in explain.items()
                    }
                )
        model.train(was_training)
        return Prediction(np.concatenate(predictions), explanations if any(explanations) else None)

    def _trim(self, name: str, array: np.ndarray, lengths: dict, row: int) -> np.ndarray:
        """Cut a declared clip axis of one video's explanation back to that video's real clip count."""
        if name not in self.clip_axes:
            return array
        spec = self.clip_axes[name]
        axis, role = spec if isinstance(spec, tuple) else (spec, None)
        return np.take(array, np.arange(int(lengths[role][row])), axis=axis)

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.options), "model": self.model.state_dict(), "extra": self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.options = self.parse_options(state["config"])
        self.load_extra_state(state["extra"])
        self.device = torch.device("cpu")
        self.model = self.build(self.train_data)
        self.model.load_state_dict(state["model"])

    def to_device(self, device: str) -> TorchHead:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def extra_state(self) -> dict[str, Any]:
        """Non-parameter state needed at prediction. Heads that compare with training videos at test time
        (exemplar heads) set ``keeps_training_data``; the rest keep two videos, enough for ``build`` to see
        the input shapes, so checkpoints stay small."""
        data = (
            self.train_data
            if self.keeps_training_data
            else self.train_data.subset(range(min(2, len(self.train_data))))
        )
        return {
            "train_data": data,
            "input_stats": None if self.input_stats is None else list(self.input_stats),
        }

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.train_data = extra["train_data"]
        stats = extra.get("input_stats")
        self.input_stats = None if stats is None else (np.asarray(stats[0]), np.asarray(stats[1]))


def input_statistics(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over every clip of every video, one video at a time (constant dims get std 1)."""
    # lazy, as in the baselines: keeps aqa-fit start-up quick
    from sklearn.preprocessing import StandardScaler

    if any(x.ndim != 2 for x in sequences):
        raise ValueError("standardise_inputs needs (T, D) clip features; these videos have more axes")
    scaler = StandardScaler()
    for x in sequences:
        scaler.partial_fit(x)
    return scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)


class PooledInputHead(TorchHead):
    """A neural head that reads only the masked time-mean of each video (MLP, USDL/MUSDL, CoRe).

    Without a training window that mean never changes, so it is computed once per video instead of in every batch
    of every epoch (identical results, an order of magnitude less work on long videos); with a window (random crops
    as augmentation) the sequences are kept.
    """

    def _pooled(self, data: SequenceData) -> SequenceData:
        if self.options.window is not None:
            return data
        return replace(data, x=[s.mean(0, keepdims=True, dtype=np.float32) for s in data.x])

    def fit(self, train: SequenceData, val: SequenceData | None = None, **options) -> History:
        return super().fit(self._pooled(train), None if val is None else self._pooled(val), **options)

    def predict(self, data: SequenceData) -> Prediction:
        return super().predict(self._pooled(data))
