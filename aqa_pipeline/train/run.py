"""``aqa-fit`` as a library: load a store, run the protocol over seeds, write the run directory.

Run directory::

    config.json        fully resolved options, exactly what ``aqa-fit --config`` takes
    run.json           the inputs: store, dataset, feature kinds and their provenance, package version
    metrics.json       per evaluated split ("test" or "cv"): spearman, pearson, mse, rl2, rl2_abs, n as means
                       over seeds, *_std beside them and each seed's own under per_seed (+ per-class and
                       Fisher-z when the data has classes)
    predictions.csv    split, fold, seed, id, truth, prediction
    exemplars.csv      exemplar heads (TPT, CoRe, FSPN): the training videos each score was voted from
    model.pt           the head trained on the whole train split (for ``aqa-fit --predict``), plain tensors
    model.json, README.md   its model card: dataset, target, head, options, feature recipe, metrics (train/model_card.py)
    history.json       per-run training curves; training_curve.png (heads trained by epochs), scatter.png
    explanations/<id>.npz   what the head says drove each score (first seed), for ``aqa-report``
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from aqa_pipeline import __version__
from aqa_pipeline.heads.base import Head
from aqa_pipeline.heads.ensemble import build_head, restore_head
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.store import FeatureSet, FeatureStore, StoreError
from aqa_pipeline.train.checkpoint import from_plain, load_checkpoint, save_checkpoint
from aqa_pipeline.train.checks import check_fit_config, check_predictions, check_target_varies
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.labels import LabelTransform
from aqa_pipeline.train.metrics import mean_over_seeds, per_class_metrics, regression_metrics, summarise
from aqa_pipeline.train.model_card import card_for_run
from aqa_pipeline.train.protocol import Fold, final_fold, make_folds
from aqa_pipeline.train.rundir import prepare_run_dir
from aqa_pipeline.train.tracking import Tracker, open_tracker

log = logging.getLogger(__name__)
NON_FEATURE_KINDS = {"boxes"}  # kinds that are inputs to other kinds, never a head's primary stream
PAPER_WARNING = (
    "PAPER PROTOCOL: the epoch was selected on the evaluated videos themselves (best-on-test, as the papers' code "
    "does). These numbers are optimistic and not comparable with honest held-out results."
)


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
    val_fraction: float = 0.15
    label_norm: str = "minmax"
    use_dd: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    final_model: bool = True
    progress: bool = True
    log: str | None = None  # experiment tracker: "tensorboard" or "mlflow" (train/tracking.py)
    ensemble: int = 1  # seeds per model, predictions averaged (heads/ensemble.py)
    refit: str | None = None  # "epochs": the saved model trains on every training video (see _final_model)

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
    config = {**head_cls.all_defaults(), **head_options}
    return head_cls.adapt_inputs(sequences, data, primary=loaded.primary, config=config)


@dataclass
class RunResult:
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    histories: list[dict[str, Any]]
    explanations: dict[str, dict[str, np.ndarray]]
    exemplars: list[dict[str, Any]]
    head: Head | None
    seconds: float


def _fit_one(
    config: FitConfig,
    head_cls: type[Head],
    loaded: LoadedData,
    fold: Fold,
    seed: int,
    tracker: Tracker | None = None,
):
    """Fit on one fold's training rows and predict its scored rows; returns raw-scale truth and prediction."""
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
    on_epoch = partial(tracker.log_epoch, f"seed{seed}/{fold.name}") if tracker is not None else None
    history = head.fit(
        sequences(fit_set), val, seed=seed, device=config.device, progress=config.progress, on_epoch=on_epoch
    )
    result = {"history": history, "transform": transform, "head": head}
    if scored is not None:
        prediction = head.predict(scored)
        check_predictions(prediction.y, scored.ids, config.head, f"{fold.name}, seed {seed}")
        result.update(
            ids=scored.ids,
            truth=scored_set.label(config.target),
            prediction=transform.inverse(prediction.y, scored.difficulty if config.use_dd else None),
            groups=scored.groups,
            explanations=_in_points(prediction.explanations, transform, scored.difficulty),
        )
        if hasattr(head, "exemplar_lists"):  # exemplar heads: which training videos each score was voted from
            pool_ids = head.train_data.ids
            result["exemplars"] = {
                vid: [pool_ids[row] for row in rows if row >= 0]
                for vid, rows in zip(scored.ids, head.exemplar_lists(scored), strict=True)
            }
    return result


def _in_points(
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


def _metrics_for(truth, prediction, groups) -> dict[str, Any]:
    metrics = regression_metrics(truth, prediction)
    if groups is not None and len(set(groups)) > 1:
        metrics["per_class"] = per_class_metrics(truth, prediction, groups)
    return metrics


def _seed_metrics(split_name: str, fold_metrics: list[dict], seed_rows: list[dict]) -> dict[str, Any]:
    """One seed's metrics: the test split's, or the mean over CV folds plus the pooled out-of-fold ones."""
    if split_name != "cv":
        return fold_metrics[0]
    # Mean over folds (as k-fold papers report), plus the pooled out-of-fold metrics.
    scalar = {k: float(np.mean([m[k] for m in fold_metrics])) for k in fold_metrics[0] if k != "per_class"}
    pooled = regression_metrics([p["truth"] for p in seed_rows], [p["prediction"] for p in seed_rows])
    scalar.update({f"pooled_{k}": v for k, v in pooled.items()})
    scalar["n"] = len(seed_rows)
    return scalar


def split_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers are means over seeds, with their std (``*_std``) and every seed's own beside."""
    scalars = [{k: v for k, v in m.items() if isinstance(v, float)} for m in per_seed]  # not counts
    spread = {k: v for k, v in summarise(scalars).items() if k.endswith("_std")}
    return {**mean_over_seeds(per_seed), **spread, "per_seed": per_seed}


def _plan(config: FitConfig, head_cls: type[Head], loaded: LoadedData) -> list[tuple[int, list[Fold]]]:
    """Every (seed, folds) the run fits, known up front so that the outer progress bar has a total and an ETA."""
    return [
        (
            seed,
            make_folds(
                len(loaded.train),
                cv=config.cv if loaded.test is None or config.cv else None,
                has_test=loaded.test is not None,
                n_test=len(loaded.test) if loaded.test is not None else 0,
                seed=seed,
                val_fraction=config.val_fraction,
                uses_validation=head_cls.uses_validation,
                paper_selection=config.protocol == "paper",
            ),
        )
        for seed in config.seeds
    ]


def run(
    store_path: str | Path, config: FitConfig, out_dir: str | Path | None = None, overwrite: bool = False
) -> RunResult:
    started = time.perf_counter()
    check_fit_config(config)
    head_cls = get_head(config.head)
    head_cls(**config.head_options)  # validate options before loading anything
    if config.log and out_dir is None:
        raise ValueError(f"--log {config.log} writes beside the run: give --out")
    if out_dir is not None:
        prepare_run_dir(out_dir, overwrite)
    store = FeatureStore(store_path)
    loaded = load_data(store, config, head_cls)
    split_name = "test" if loaded.test is not None else "cv"
    plan = _plan(config, head_cls, loaded)
    tracker = open_tracker(config.log, Path(out_dir), config.head, asdict(config)) if config.log else None
    bar = tqdm(
        total=sum(len(folds) for _, folds in plan) + int(config.final_model),
        desc=f"{config.head} folds × seeds",
        unit="fit",
        disable=not config.progress,
    )
    per_seed: list[dict[str, Any]] = []
    predictions, histories, exemplars = [], [], []
    explanations: dict[str, dict[str, np.ndarray]] = {}
    for seed_index, (seed, folds) in enumerate(plan):
        fold_metrics = []
        for fold in folds:
            result = _fit_one(config, head_cls, loaded, fold, seed, tracker)
            fold_metrics.append(_metrics_for(result["truth"], result["prediction"], result["groups"]))
            histories.append({"seed": seed, "fold": fold.name, **asdict(result["history"])})
            exemplars += [
                {"seed": seed, "fold": fold.name, "id": vid, "exemplars": " ".join(ids)}
                for vid, ids in result.get("exemplars", {}).items()
            ]
            for i, vid in enumerate(result["ids"]):
                predictions.append(
                    {
                        "split": split_name,
                        "fold": fold.name,
                        "seed": seed,
                        "id": vid,
                        "truth": float(result["truth"][i]),
                        "prediction": float(result["prediction"][i]),
                    }
                )
                if seed_index == 0 and result["explanations"] is not None:
                    explanations[vid] = {
                        **result["explanations"][i],
                        "truth": result["truth"][i],
                        "prediction": result["prediction"][i],
                    }
            log.info("seed %d %s: %s", seed, fold.name, fold_metrics[-1])
            bar.set_postfix(seed=seed, fold=fold.name, spearman=f"{fold_metrics[-1]['spearman']:.3f}")
            bar.update()
        per_seed.append(
            _seed_metrics(split_name, fold_metrics, [p for p in predictions if p["seed"] == seed])
        )
    metrics: dict[str, Any] = {split_name: split_metrics(per_seed)}
    metrics["protocol"] = config.protocol
    metrics["selection"] = (
        "best epoch on the evaluated videos (paper protocol; optimistic)"
        if config.protocol == "paper"
        else f"validation split of {config.val_fraction:.0%} carved from the training videos"
        if head_cls.uses_validation
        else "inner cross-validation on the training videos"
    )
    if config.protocol == "paper":
        metrics["warning"] = PAPER_WARNING
    final_head = final_transform = None
    if config.final_model:
        bar.set_postfix(model="final (whole train split)")
        final_config, fold, metrics["final_model"] = _final_model(
            config, head_cls, len(loaded.train), histories
        )
        final = _fit_one(final_config, head_cls, loaded, fold, config.seeds[0], tracker)
        final_head, final_transform = final["head"], final["transform"]
        bar.update()
    bar.close()
    if tracker is not None:
        tracker.close()
    seconds = time.perf_counter() - started
    metrics["seconds"] = round(seconds, 2)
    result = RunResult(metrics, predictions, histories, explanations, exemplars, final_head, seconds)
    if out_dir is not None:
        write_run_dir(Path(out_dir), config, store, loaded, result, final_transform)
    return result


def _final_model(
    config: FitConfig, head_cls: type[Head], n_train: int, histories: list[dict[str, Any]]
) -> tuple[FitConfig, Fold, dict[str, Any]]:
    """How the saved model trains. By default as in the protocol: the validation carve is held out and selects
    the epoch. With ``refit="epochs"`` a head that selects epochs trains on every training video for the median
    of the evaluated fits' best epochs (first seed), so it sees as many videos as the closed-form heads do."""
    if config.refit != "epochs" or not head_cls.uses_validation:
        fold = final_fold(
            n_train,
            seed=config.seeds[0],
            val_fraction=config.val_fraction,
            uses_validation=head_cls.uses_validation,
        )
        return config, fold, {"videos": len(fold.fit), "refit": None}
    best = [h["best_epoch"] for h in histories if h["seed"] == config.seeds[0] and h["best_epoch"]]
    epochs = max(1, int(np.median(best))) if best else int(head_cls(**config.head_options).config["epochs"])
    refit = replace(config, head_options={**config.head_options, "epochs": epochs})
    fold = final_fold(n_train, seed=config.seeds[0], val_fraction=0.0, uses_validation=False)
    return refit, fold, {"videos": n_train, "refit": "epochs", "epochs": epochs, "fold_best_epochs": best}


def write_run_dir(
    out: Path,
    config: FitConfig,
    store: FeatureStore,
    loaded: LoadedData,
    result: RunResult,
    transform: LabelTransform | None,
) -> None:
    from aqa_pipeline.report.run_plots import plot_scatter, plot_training_curves

    head_cls = get_head(config.head)
    # config.json is exactly what --config takes (every head option resolved); the rest describes the inputs.
    resolved_fit = {**asdict(config), "head_options": {**head_cls.all_defaults(), **config.head_options}}
    inputs = {
        "store": str(store.path),
        "dataset": store.dataset,
        "primary_feature": loaded.primary,
        "extras": loaded.extras,
        "provenance": {k: store.provenance(k) for k in [loaded.primary, *loaded.extras.values()]},
        "package_version": __version__,
    }
    resolved = {"fit": resolved_fit, **inputs}
    (out / "config.json").write_text(json.dumps(resolved_fit, indent=2, default=str))
    (out / "run.json").write_text(json.dumps(inputs, indent=2, default=str))
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=_json_default))
    (out / "history.json").write_text(json.dumps(result.histories, default=_json_default))
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "fold", "seed", "id", "truth", "prediction"])
        writer.writeheader()
        writer.writerows(result.predictions)
    if result.exemplars:
        with open(out / "exemplars.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["seed", "fold", "id", "exemplars"])
            writer.writeheader()
            writer.writerows(result.exemplars)
    if result.explanations:
        folder = out / "explanations"
        folder.mkdir(exist_ok=True)
        for vid, arrays in result.explanations.items():
            np.savez_compressed(folder / f"{vid}.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    if result.head is not None:
        payload = {
            "head": config.head,
            "state": result.head.state_dict(),
            "label_transform": transform.to_dict() if transform else None,
            "config": resolved,
        }
        save_checkpoint(payload, out / "model.pt")
        card_for_run(inputs, resolved_fit, result.metrics, payload["label_transform"]).write(out)
    if any(h["train_loss"] for h in result.histories):  # closed-form heads have no epochs to draw
        plot_training_curves(result.histories, out / "training_curve.png")
    plot_scatter(result.predictions, out / "scatter.png", title=f"{config.head} · {config.target}")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def predict_store(
    run_dir: str | Path, store_path: str | Path, split: str | None = None
) -> list[dict[str, Any]]:
    """Score the videos of another store with a saved run's model (refusing incompatible features): per video
    its id, truth (NaN when unlabelled), prediction in points, explanation arrays and clips' start frames."""
    from aqa_pipeline.store.schema import incompatibilities

    run_dir = Path(run_dir)
    # Plain tensors and data only: a shared (or crafted) model.pt cannot run code when loaded.
    raw = load_checkpoint(run_dir / "model.pt")
    transform = LabelTransform(**from_plain(raw["label_transform"]))
    checkpoint = from_plain(raw, to_working=transform.forward)
    resolved = checkpoint["config"]
    fit = FitConfig.from_dict(resolved["fit"])
    head_cls = get_head(checkpoint["head"])
    store = FeatureStore(store_path)
    kinds = [resolved["primary_feature"], *resolved["extras"].values()]
    for kind in kinds:
        problems = incompatibilities(kind, resolved["provenance"][kind], store.provenance(kind))
        if problems:
            raise StoreError(
                f"{store.path} features differ from the ones {run_dir} was trained on: {'; '.join(problems)}"
            )
    data = store.load(kinds, split=split, dtype=np.float32)
    loaded = LoadedData(data, None, resolved["primary_feature"], resolved["extras"], store.dataset)
    head = restore_head(head_cls, checkpoint["state"])
    # Unlabelled videos simply get NaN targets; the head's own options shape its inputs as in training.
    sequences = to_sequences(data, loaded, transform, fit.target, head_cls, fit.head_options)
    prediction = head.predict(sequences)
    predicted = transform.inverse(prediction.y, sequences.difficulty if fit.use_dd else None)
    explanations = _in_points(prediction.explanations, transform, sequences.difficulty) or [{}] * len(data)
    truth = data.label(fit.target)
    return [
        {"id": vid, "truth": float(t), "prediction": float(p), "explanation": e, "times": times}
        for vid, t, p, e, times in zip(
            data.ids, truth, predicted, explanations, data.times[resolved["primary_feature"]], strict=True
        )
    ]


def write_scored_store(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``predictions.csv`` of a scored store in its own folder, and ``metrics.json`` when the videos have labels
    (metrics over the labelled ones; ``None`` when fewer than two are labelled)."""
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "truth", "prediction"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    labelled = [r for r in rows if np.isfinite(r["truth"])]
    if len(labelled) < 2:
        return None
    metrics = regression_metrics([r["truth"] for r in labelled], [r["prediction"] for r in labelled])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
