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
    fits/              each evaluated fit as it finished (train/journal.py): ``--resume`` continues from them

metrics.json is written last: its presence means the run finished.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, astuple, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from aqa_pipeline import __version__
from aqa_pipeline.heads.base import Head, History
from aqa_pipeline.heads.ensemble import restore_head
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.store import FeatureStore, StoreError
from aqa_pipeline.train.checkpoint import from_plain, load_checkpoint, save_checkpoint
from aqa_pipeline.train.checks import check_fit_config
from aqa_pipeline.train.engines import EngineChoice, FitEngine, InProcessEngine
from aqa_pipeline.train.fitting import (
    FitConfig,
    FitTask,
    FoldResult,
    LoadedData,
    in_points,
    load_data,
    to_sequences,
)
from aqa_pipeline.train.journal import FitJournal, fit_settings
from aqa_pipeline.train.labels import LabelTransform
from aqa_pipeline.train.metrics import mean_over_seeds, per_class_metrics, regression_metrics, summarise
from aqa_pipeline.train.model_card import card_for_run
from aqa_pipeline.train.protocol import Fold, final_fold, make_folds
from aqa_pipeline.train.rundir import prepare_run_dir
from aqa_pipeline.train.tracking import Tracker, log_history, open_tracker

log = logging.getLogger(__name__)
PAPER_WARNING = (
    "PAPER PROTOCOL: the epoch was selected on the evaluated videos themselves (best-on-test, as the papers' code "
    "does). These numbers are optimistic and not comparable with honest held-out results."
)


@dataclass(frozen=True)
class PredictedVideo:
    """One video scored by one evaluated fit: a row of predictions.csv."""

    split: str  # "test" or "cv"
    fold: str
    seed: int
    id: str
    truth: float
    prediction: float


@dataclass(frozen=True)
class FitCurves:
    """One evaluated fit's training history: an entry of history.json."""

    seed: int
    fold: str
    history: History

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "fold": self.fold, **asdict(self.history)}


@dataclass(frozen=True)
class VotedFrom:
    """Exemplar heads (TPT, CoRe, FSPN): the training videos one score was voted from, a row of exemplars.csv."""

    seed: int
    fold: str
    id: str
    exemplars: tuple[str, ...]


@dataclass
class RunResult:
    metrics: dict[str, Any]
    predictions: list[PredictedVideo]
    histories: list[FitCurves]
    explanations: dict[str, dict[str, np.ndarray]]
    exemplars: list[VotedFrom]
    head: Head | None
    seconds: float


def _metrics_for(truth, prediction, groups) -> dict[str, Any]:
    metrics = regression_metrics(truth, prediction)
    if groups is not None and len(set(groups)) > 1:
        metrics["per_class"] = per_class_metrics(truth, prediction, groups)
    return metrics


def _seed_metrics(
    split_name: str, fold_metrics: list[dict], seed_rows: list[PredictedVideo]
) -> dict[str, Any]:
    """One seed's metrics: the test split's, or the mean over CV folds plus the pooled out-of-fold ones."""
    if split_name != "cv":
        return fold_metrics[0]
    # Mean over folds (as k-fold papers report), plus the pooled out-of-fold metrics.
    scalar = {k: float(np.mean([m[k] for m in fold_metrics])) for k in fold_metrics[0] if k != "per_class"}
    pooled = regression_metrics([p.truth for p in seed_rows], [p.prediction for p in seed_rows])
    scalar.update({f"pooled_{k}": v for k, v in pooled.items()})
    scalar["n"] = len(seed_rows)
    return scalar


def split_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers are means over seeds, with their std (``*_std``) and every seed's own beside."""
    scalars = [{k: v for k, v in m.items() if isinstance(v, float)} for m in per_seed]  # not counts
    spread = {k: v for k, v in summarise(scalars).items() if k.endswith("_std")}
    return {**mean_over_seeds(per_seed), **spread, "per_seed": per_seed}


def plan_tasks(config: FitConfig, head_cls: type[Head], loaded: LoadedData) -> list[FitTask]:
    """Every fit the run evaluates, seed by seed and fold by fold, known up front (progress totals, engines)."""
    return [
        FitTask(config, fold, seed)
        for seed in config.seeds
        for fold in make_folds(
            len(loaded.train),
            cv=config.cv if loaded.test is None or config.cv else None,
            has_test=loaded.test is not None,
            n_test=len(loaded.test) if loaded.test is not None else 0,
            seed=seed,
            val_fraction=config.val_fraction,
            uses_validation=head_cls.selects_epochs(config.head_options),
            paper_selection=config.protocol == "paper",
        )
    ]


def fold_spearman(result: FoldResult) -> float:
    return regression_metrics(result.truth, result.prediction)["spearman"]


def run_tasks(
    engine: FitEngine,
    tasks: list[FitTask],
    tracker: Tracker | None = None,
    bar: tqdm | None = None,
    journal: FitJournal | None = None,
    done: dict[int, FoldResult] | None = None,
) -> list[FoldResult]:
    """The tasks' results in plan order, whatever order the engine finishes them in; the ``done`` ones (by
    index, reloaded from a journal) are not refitted, and with a ``journal`` each new fit is kept as it finishes."""
    results = dict(done or {})
    if bar is not None:
        bar.update(len(results))
    todo = [i for i in range(len(tasks)) if i not in results]
    for position, result in engine.results([tasks[i] for i in todo]):
        results[todo[position]] = result
        if journal is not None:
            journal.record(result)
        if tracker is not None and not engine.tracks_epochs:
            log_history(tracker, result.task.run_name, result.history)
        log.info("%s: spearman %.4f", result.task.run_name, fold_spearman(result))
        if bar is not None:
            bar.set_postfix(fit=result.task.run_name, spearman=f"{fold_spearman(result):.3f}")
            bar.update()
    return [results[i] for i in range(len(tasks))]


def open_journal(
    out_dir: Path,
    resume: bool,
    config: FitConfig,
    head_cls: type[Head],
    loaded: LoadedData,
    store: FeatureStore,
) -> FitJournal:
    """The run directory's journal of finished fits. Resuming checks the journal's settings first, then empties
    the folder except for it; otherwise the folder was emptied (``prepare_run_dir``) before the data loaded."""
    provenance = {kind: store.provenance(kind) for kind in [loaded.primary, *loaded.extras.values()]}
    settings = fit_settings(config, head_cls, loaded, provenance)
    journal = FitJournal.open(out_dir, settings, head_defaults=head_cls.resolved_options({}))
    if resume:
        prepare_run_dir(out_dir, resume=True)
    journal.start()
    return journal


def _gather(split_name: str, results: list[FoldResult]) -> RunResult:
    """Predictions, histories, exemplars, first-seed explanations and per-seed metrics of the evaluated fits."""
    gathered = RunResult({}, [], [], {}, [], None, 0.0)
    per_seed = []
    first_seed = results[0].task.seed
    for seed in dict.fromkeys(r.task.seed for r in results):
        fold_metrics = []
        for result in (r for r in results if r.task.seed == seed):
            fold = result.task.fold.name
            fold_metrics.append(_metrics_for(result.truth, result.prediction, result.groups))
            gathered.histories.append(FitCurves(seed, fold, result.history))
            gathered.exemplars += [
                VotedFrom(seed, fold, vid, tuple(ids)) for vid, ids in result.exemplars.items()
            ]
            for i, vid in enumerate(result.ids):
                truth, predicted = float(result.truth[i]), float(result.prediction[i])
                gathered.predictions.append(PredictedVideo(split_name, fold, seed, vid, truth, predicted))
                if seed == first_seed and result.explanations is not None:
                    gathered.explanations[vid] = {
                        **result.explanations[i],
                        "truth": truth,
                        "prediction": predicted,
                    }
        seed_rows = [p for p in gathered.predictions if p.seed == seed]
        per_seed.append(_seed_metrics(split_name, fold_metrics, seed_rows))
    gathered.metrics[split_name] = split_metrics(per_seed)
    return gathered


def run(
    store_path: str | Path,
    config: FitConfig,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    engine: EngineChoice | None = None,
    resume: bool = False,
) -> RunResult:
    """Evaluate ``config`` on the store (its test split, or CV) and train the saved model; ``engine`` says where
    the evaluated fits run (it changes the time taken, not the numbers). With ``resume``, the fits an earlier
    run of the same settings finished in ``out_dir`` are reused (any seeds it had in common with this one)."""
    started = time.perf_counter()
    check_fit_config(config)
    head_cls = get_head(config.head)
    if config.log and out_dir is None:
        raise ValueError(f"--log {config.log} writes beside the run: give --out")
    # Resuming empties the folder only once its finished fits are checked against these settings.
    if out_dir is not None and (overwrite or not resume):
        prepare_run_dir(out_dir, overwrite, resume)
    store = FeatureStore(store_path)
    loaded = load_data(store, config, head_cls)
    split_name = "test" if loaded.test is not None else "cv"
    tasks = plan_tasks(config, head_cls, loaded)
    journal = (
        None if out_dir is None else open_journal(Path(out_dir), resume, config, head_cls, loaded, store)
    )
    tracker = open_tracker(config.log, Path(out_dir), config.head, asdict(config)) if config.log else None
    bar = tqdm(
        total=len(tasks) + int(config.final_model),
        desc=f"{config.head} folds × seeds",
        unit="fit",
        disable=not config.progress,
    )
    done = journal.finished(tasks) if journal is not None else {}
    fits = (engine or EngineChoice()).open(store_path, config, loaded, tracker)
    try:
        result = _gather(split_name, run_tasks(fits, tasks, tracker, bar, journal, done))
    finally:
        fits.close()
    metrics = result.metrics
    metrics["protocol"] = config.protocol
    if done:
        metrics["fits_reused"] = len(done)  # finished by an earlier, interrupted or shorter, run (--resume)
    metrics["selection"] = (
        "best epoch on the evaluated videos (paper protocol; optimistic)"
        if config.protocol == "paper"
        else f"validation split of {config.val_fraction:.0%} carved from the training videos"
        if head_cls.selects_epochs(config.head_options) and config.val_fraction > 0
        else "last epoch, trained on every training video"
        if head_cls.uses_validation
        else head_cls.tuning_summary(config.head_options)
    )
    if config.protocol == "paper":
        metrics["warning"] = PAPER_WARNING
    final_transform = None
    if config.final_model:
        bar.set_postfix(model="final (whole train split)")
        final_config, fold, metrics["final_model"] = _final_model(
            config, head_cls, len(loaded.train), result.histories
        )
        final_task = FitTask(final_config, fold, config.seeds[0], keep_head=True)
        [(_, final)] = InProcessEngine(loaded, tracker).results([final_task])
        result.head, final_transform = final.head, final.transform
        bar.update()
    bar.close()
    if tracker is not None:
        tracker.close()
    result.seconds = time.perf_counter() - started
    metrics["seconds"] = round(result.seconds, 2)
    if out_dir is not None:
        write_run_dir(Path(out_dir), config, store, loaded, result, final_transform)
    return result


def _final_model(
    config: FitConfig, head_cls: type[Head], n_train: int, histories: list[FitCurves]
) -> tuple[FitConfig, Fold, dict[str, Any]]:
    """How the saved model trains. By default as in the protocol: the validation carve is held out and selects
    the epoch. With ``refit="epochs"`` a head that selects epochs trains on every training video for the median
    of the evaluated fits' best epochs (first seed), so it sees as many videos as the closed-form heads do."""
    selects = head_cls.selects_epochs(config.head_options)
    if config.refit != "epochs" or not selects:
        fold = final_fold(
            n_train, seed=config.seeds[0], val_fraction=config.val_fraction, uses_validation=selects
        )
        return config, fold, {"videos": len(fold.fit), "refit": None}
    best = [c.history.best_epoch for c in histories if c.seed == config.seeds[0] and c.history.best_epoch]
    epochs = max(1, int(np.median(best))) if best else head_cls.parse_options(config.head_options).epochs
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
    resolved_fit = {**asdict(config), "head_options": head_cls.resolved_options(config.head_options)}
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
    histories = [curves.as_dict() for curves in result.histories]
    (out / "history.json").write_text(json.dumps(histories, default=_json_default))
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(field.name for field in fields(PredictedVideo))
        writer.writerows(astuple(row) for row in result.predictions)
    if result.exemplars:
        with open(out / "exemplars.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(field.name for field in fields(VotedFrom))
            writer.writerows((r.seed, r.fold, r.id, " ".join(r.exemplars)) for r in result.exemplars)
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
    if any(c.history.train_loss for c in result.histories):  # closed-form heads have no epochs to draw
        plot_training_curves(result.histories, out / "training_curve.png")
    plot_scatter(result.predictions, out / "scatter.png", title=f"{config.head} · {config.target}")
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=_json_default))  # finished


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


@dataclass(frozen=True)
class ScoredVideo:
    """One video of another store, scored by a saved run's model."""

    id: str
    truth: float  # NaN when unlabelled
    prediction: float  # in points
    explanation: dict[str, np.ndarray]  # the head's arrays, in points (with label_scale / label_offset)
    times: np.ndarray  # source frame of each clip's first frame


def predict_store(
    run_dir: str | Path, store_path: str | Path, split: str | None = None, device: str = "cpu"
) -> list[ScoredVideo]:
    """Score the videos of another store with a saved run's model on ``device``, refusing features that differ
    from the ones it was trained on."""
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
    head = restore_head(head_cls, checkpoint["state"]).to_device(device)
    # Unlabelled videos simply get NaN targets; the head's own options shape its inputs as in training.
    sequences = to_sequences(data, loaded, transform, fit.target, head_cls, fit.head_options)
    prediction = head.predict(sequences)
    predicted = transform.inverse(prediction.y, sequences.difficulty if fit.use_dd else None)
    explanations = in_points(prediction.explanations, transform, sequences.difficulty) or [{}] * len(data)
    truth = data.label(fit.target)
    return [
        ScoredVideo(vid, float(t), float(p), e, times)
        for vid, t, p, e, times in zip(
            data.ids, truth, predicted, explanations, data.times[resolved["primary_feature"]], strict=True
        )
    ]


def write_scored_store(out: Path, rows: list[ScoredVideo]) -> dict[str, Any] | None:
    """``predictions.csv`` of a scored store in its own folder, and ``metrics.json`` when the videos have labels
    (metrics over the labelled ones; ``None`` when fewer than two are labelled)."""
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "truth", "prediction"])
        writer.writerows((r.id, r.truth, r.prediction) for r in rows)
    labelled = [r for r in rows if np.isfinite(r.truth)]
    if len(labelled) < 2:
        return None
    metrics = regression_metrics([r.truth for r in labelled], [r.prediction for r in labelled])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
