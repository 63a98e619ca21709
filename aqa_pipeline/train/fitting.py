"""One fit of a head: the run's settings (``FitConfig``), the loaded store, and fitting one fold with one seed.

This is the unit that ``run`` and ``tune`` schedule, in-process or on the engines of :mod:`.engines`
(worker processes, Ray tasks): a ``FitTask`` in, a ``FoldResult`` out, both plain data so that they can cross
process boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aqa_pipeline.heads.base import EpochCallback, Head, History
from aqa_pipeline.heads.ensemble import build_head
from aqa_pipeline.heads.registry import get_head, head_names
from aqa_pipeline.store import FeatureSet, FeatureStore, StoreError
from aqa_pipeline.train.checks import check_predictions, check_target_varies
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.labels import LabelTransform
from aqa_pipeline.train.protocol import Fold

NON_FEATURE_KINDS = {"boxes"}  # kinds that are inputs to other kinds, never a head's primary stream


@dataclass
class FitConfig:
    head: str
    target: str = "score"
    feature: str | None = None
    extras: dict[str, str] = field(
        default_factory=dict
    )  # role -> store kind (default: the head's extra_roles)
    cv: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    protocol: str = "honest"  # or "paper"
    val_fraction: float | None = None  # None: the head's default_val_fraction
    label_norm: str = "minmax"
    use_dd: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    final_model: bool = True
    progress: bool = True
    log: str | None = None  # experiment tracker: "tensorboard" or "mlflow" (train/tracking.py)
    ensemble: int = 1  # seeds per model, predictions averaged (heads/ensemble.py)
    refit: str | None = None  # "epochs": the saved model trains on every training video (see _final_model)

    def __post_init__(self) -> None:
        if self.val_fraction is None and self.head in head_names():
            self.val_fraction = get_head(self.head).default_val_fraction

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown config keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**values)


@dataclass
class LoadedData:
    train: FeatureSet
    test: FeatureSet | None
    primary: str
    extras: dict[str, str]
    dataset: str = ""


def resolve_inputs(
    store: FeatureStore, config: FitConfig, head_cls: type[Head]
) -> tuple[str, dict[str, str]]:
    """Pick the primary feature kind and the extra roles, with errors that say what the store has."""
    candidates = [k for k in store.kinds if k not in NON_FEATURE_KINDS]
    role_kinds = {kind for kinds in head_cls.extra_roles.values() for kind in kinds}
    if config.feature:
        if config.feature not in store.kinds:
            raise StoreError(f"{store.path} has no feature kind {config.feature!r}; it has {store.kinds}")
        primary = config.feature
    else:
        primary_candidates = [k for k in candidates if k not in role_kinds] or candidates
        if len(primary_candidates) != 1:
            raise ValueError(
                f"{store.path} holds several feature kinds {primary_candidates}: choose one with --feature"
            )
        primary = primary_candidates[0]
    extras = dict(config.extras)
    for role, kinds in head_cls.extra_roles.items():
        if role not in extras:
            present = [k for k in kinds if k in store.kinds]
            if present:
                extras[role] = present[0]
    missing = [r for r in head_cls.required_roles if r not in extras]
    if missing:
        raise ValueError(
            f"head {config.head!r} needs {missing} ({[head_cls.extra_roles[r] for r in missing]}); "
            f"{store.path} has {store.kinds}"
        )
    return primary, extras


def load_data(store: FeatureStore, config: FitConfig, head_cls: type[Head]) -> LoadedData:
    primary, extras = resolve_inputs(store, config, head_cls)
    kinds = [primary, *[k for k in extras.values() if k != primary]]
    splits = store.splits()
    if splits.get("train", 0) == 0:
        raise StoreError(f"{store.path} has no 'train' videos (splits: {splits})")
    train = store.load(kinds, split="train", dtype=np.float32)
    test = (
        store.load(kinds, split="test", dtype=np.float32)
        if splits.get("test", 0) and config.cv is None
        else None
    )
    for name, data in (("train", train), ("test", test)):
        if data is None:
            continue
        values = data.label(config.target)
        if np.isnan(values).any():
            bad = [vid for vid, v in zip(data.ids, values, strict=True) if np.isnan(v)]
            known = sorted(set(data.label_names()) - {"split", "complete"})
            raise ValueError(
                f"target {config.target!r} is missing for {len(bad)} {name} videos (e.g. {bad[:5]}); "
                f"labels in this store: {known}"
            )
        if config.use_dd and np.isnan(data.label("difficulty")).any():
            raise ValueError(f"--use-dd: some {name} videos have no difficulty degree")
        check_target_varies(values, config.target, name)
    return LoadedData(train, test, primary, extras, store.dataset)


def to_sequences(
    data: FeatureSet,
    loaded: LoadedData,
    transform: LabelTransform,
    target: str,
    head_cls: type[Head],
    head_options: dict[str, Any],
) -> SequenceData:
    difficulty = data.label("difficulty")
    has_dd = not np.isnan(difficulty).all()
    groups = np.array([str(lab.get("action_class", "")) for lab in data.labels], dtype=object)
    judge_names = sorted(k for k in data.label_names() if k.startswith("judge"))
    judges = np.stack([data.label(k) for k in judge_names], 1) if judge_names else None
    sequences = SequenceData(
        ids=list(data.ids),
        x=data.features[loaded.primary],
        y=transform.forward(data.label(target), difficulty if has_dd else None),
        extra={role: data.features[kind] for role, kind in loaded.extras.items()},
        difficulty=difficulty if has_dd else None,
        groups=groups if any(groups) else None,
        judges=None if judges is None or np.isnan(judges).any() else judges,
        to_working=transform.forward,
    )
    options = head_cls.parse_options(head_options)
    return head_cls.adapt_inputs(sequences, data, primary=loaded.primary, options=options)


@dataclass(frozen=True)
class FitTask:
    """Fit ``config``'s head on ``fold``'s training rows with ``seed``, and score its scored rows."""

    config: FitConfig
    fold: Fold
    seed: int
    keep_head: bool = False  # send the fitted head back (the saved model); CV folds only need their scores

    @property
    def run_name(self) -> str:
        """How experiment trackers name this fit's curves."""
        return f"seed{self.seed}/{self.fold.name}"


@dataclass
class FoldResult:
    """A fit's scored videos in points (raw label scale) and what explains them; ``head`` only when kept."""

    task: FitTask
    history: History
    transform: LabelTransform
    ids: list[str] = field(default_factory=list)
    truth: np.ndarray | None = None
    prediction: np.ndarray | None = None
    groups: np.ndarray | None = None
    explanations: list[dict[str, np.ndarray]] | None = None
    exemplars: dict[str, list[str]] = field(
        default_factory=dict
    )  # scored id → training ids it was voted from
    head: Head | None = None


def fit_task(
    task: FitTask, head_cls: type[Head], loaded: LoadedData, on_epoch: EpochCallback | None = None
) -> FoldResult:
    """Fit on one fold's training rows and predict its scored rows; truth and prediction in points."""
    config, fold = task.config, task.fold
    fit_set = loaded.train.subset(fold.fit)
    scored_set = (loaded.test if fold.score_on_test else loaded.train).subset(fold.score)
    transform = LabelTransform.fit(
        fit_set.label(config.target),
        fit_set.label("difficulty") if config.use_dd else None,
        mode=config.label_norm,
        use_dd=config.use_dd,
        dataset=loaded.dataset,
    )

    def sequences(data: FeatureSet) -> SequenceData:
        return to_sequences(data, loaded, transform, config.target, head_cls, config.head_options)

    scored = sequences(scored_set) if len(scored_set) else None
    if config.protocol == "paper":
        val = scored
    else:
        val = sequences(loaded.train.subset(fold.val)) if fold.val is not None else None
    head = build_head(head_cls, config.head_options, config.ensemble)
    history = head.fit(
        sequences(fit_set),
        val,
        seed=task.seed,
        device=config.device,
        progress=config.progress,
        on_epoch=on_epoch,
    )
    result = FoldResult(task, history, transform, head=head if task.keep_head else None)
    if scored is None:
        return result
    prediction = head.predict(scored)
    check_predictions(prediction.y, scored.ids, config.head, f"{fold.name}, seed {task.seed}")
    result.ids = scored.ids
    result.truth = scored_set.label(config.target)
    result.prediction = transform.inverse(prediction.y, scored.difficulty if config.use_dd else None)
    result.groups = scored.groups
    result.explanations = in_points(prediction.explanations, transform, scored.difficulty)
    if hasattr(head, "exemplar_lists"):  # exemplar heads: which training videos each score was voted from
        pool_ids = head.train_data.ids
        result.exemplars = {
            vid: [pool_ids[row] for row in rows if row >= 0]
            for vid, rows in zip(scored.ids, head.exemplar_lists(scored), strict=True)
        }
    return result


def in_points(
    explanations: list[dict[str, np.ndarray]] | None, transform: LabelTransform, difficulty: np.ndarray | None
) -> list[dict[str, np.ndarray]] | None:
    """Each video's explanation with the scale and offset that take its working units to points (the report
    reads them: a fold's transform is fitted on that fold's training videos)."""
    if explanations is None:
        return None
    factors = [None] * len(explanations) if difficulty is None else list(difficulty)
    with_units = []
    for arrays, factor in zip(explanations, factors, strict=True):
        scale, offset = transform.to_points(factor)
        with_units.append({**arrays, "label_scale": np.float64(scale), "label_offset": np.float64(offset)})
    return with_units
