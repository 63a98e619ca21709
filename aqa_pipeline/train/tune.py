"""``aqa-fit --tune N``: choose a head's options by cross-validation on the training videos, with Optuna.

Every trial is scored the same way: the mean Spearman of the K-fold CV on the training split, over the same folds
and seeds for every trial (the test split is never loaded). TPE proposes each trial's options from the head's
declared ``search_space`` (options given with ``--set`` stay fixed); after each fit the trial reports its running
mean and the median pruner stops a trial that is already worse than the median of the earlier ones at that point.

The study lives in ``<out>/study.db`` (SQLite): an interrupted search resumes where it stopped, re-running the
trials that were cut off with the options they had. After every trial the outputs are rewritten, so they are
current whenever the search stops:

    best.yaml      the best trial as an ``aqa-fit --config`` file (CV score and trial number in its header)
    trials.csv     every trial: state, CV Spearman, seconds, options
    tuning.json    the summary (best trial, counts, the CV settings)
    tuning.png     CV Spearman by trial (pruned trials at their last report) and the options' importances

With ``--jobs N`` or ``--engine ray`` a trial's fits run in parallel on the engines of :mod:`.engines`, and the
trials run one after the other. Optuna rather than Ray Tune: TPE learns from each finished trial, so a few trials
in parallel would waste the early ones; the search is then one SQLite file that resumes the same way on every
engine; and pruning works on the per-fit reports that our CV produces anyway, where Ray Tune's schedulers expect
training iterations of one model.

The tuned CV score is the best of many tries on the same folds and so is optimistic; evaluate the chosen options
with ``aqa-fit --config best.yaml`` on other seeds (other folds), and on the test split when there is one.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.heads.search import Dimension
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.train.checks import check_fit_config
from aqa_pipeline.train.engines import EngineChoice, FitEngine
from aqa_pipeline.train.fitting import FitConfig, FitTask, load_data
from aqa_pipeline.train.run import fold_spearman, plan_tasks
from aqa_pipeline.train.rundir import RunDirError, prepare_run_dir

STUDY_FILE = "study.db"
STUDY_NAME = "aqa-tune"
DEFAULT_CV = 5
STARTUP_TRIALS = 5  # random trials before TPE models the results, and before the pruner may stop a trial
# What identifies a search: a study resumed with other settings would mix incomparable CV scores.
IDENTITY_FIELDS = (
    "head",
    "target",
    "feature",
    "cv",
    "seeds",
    "protocol",
    "val_fraction",
    "label_norm",
    "use_dd",
)


@dataclass
class TuneResult:
    best_value: float
    best_options: dict[str, Any]  # the searched options of the best trial
    best_trial: int
    complete: int
    pruned: int
    failed: int
    seconds: float
    out: Path


def searched_space(config: FitConfig) -> dict[str, Dimension]:
    """The head's search space less the options fixed with ``--set``; refused when nothing is left to tune."""
    space = get_head(config.head).search_space
    if not space:
        raise ValueError(
            f"head {config.head!r} declares no search space: it has nothing --tune can choose "
            "(ridge and svr choose their regularisation by inner cross-validation already)"
        )
    searched = {name: dim for name, dim in space.items() if name not in config.head_options}
    if not searched:
        raise ValueError(f"every option --tune would search for {config.head!r} is fixed with --set")
    return searched


def tune(
    store_path: str | Path,
    config: FitConfig,
    trials: int,
    out_dir: str | Path,
    engine: EngineChoice | None = None,
    overwrite: bool = False,
) -> TuneResult:
    """Run the search up to ``trials`` finished trials in all (counting those of an earlier, interrupted run)."""
    started = time.perf_counter()
    show_progress = config.progress
    if trials < 1:
        raise ValueError(f"--tune {trials}: expected at least one trial")
    config = replace(config, cv=config.cv or DEFAULT_CV, final_model=False, progress=False, log=None)
    check_fit_config(config)
    head_cls = get_head(config.head)
    searched = searched_space(config)
    out = _prepare_dir(Path(out_dir), overwrite)
    study = _open_study(out, config)
    loaded = load_data(FeatureStore(store_path), config, head_cls)
    template = plan_tasks(config, head_cls, loaded)
    fits = (engine or EngineChoice()).open(store_path, config, loaded, None)
    remaining = trials - _finished(study)
    done = trials - max(remaining, 0)
    bar = tqdm(
        total=trials, initial=done, desc=f"tune {config.head}", unit="trial", disable=not show_progress
    )

    def after_trial(study, _trial) -> None:
        _write_outputs(study, config, out, str(store_path))
        bar.update()

    try:
        if remaining > 0:
            # a diverged trial (NaN predictions: ValueError) is recorded as failed and the search goes on
            study.optimize(
                lambda trial: _objective(trial, config, searched, template, fits),
                n_trials=remaining,
                catch=(ValueError,),
                callbacks=[after_trial],
            )
    finally:
        fits.close()
        bar.close()
    _write_outputs(study, config, out, str(store_path))
    return _result(study, out, time.perf_counter() - started)


def _result(study, out: Path, seconds: float) -> TuneResult:
    from optuna.trial import TrialState

    counts = {state: len(study.get_trials(states=(state,))) for state in TrialState}
    if not counts[TrialState.COMPLETE]:
        raise ValueError(
            f"no trial of {out / STUDY_FILE} finished ({counts[TrialState.FAIL]} failed, "
            f"{counts[TrialState.PRUNED]} pruned): see {out / 'trials.csv'}"
        )
    best = study.best_trial
    return TuneResult(
        best_value=float(best.value),
        best_options=dict(best.params),
        best_trial=best.number,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        seconds=seconds,
        out=out,
    )


def _objective(trial, config: FitConfig, searched, template: list[FitTask], fits: FitEngine) -> float:
    """Mean CV Spearman of one trial's options, reported fit by fit so that a hopeless trial is pruned."""
    import optuna

    options = {**config.head_options, **{name: dim.suggest(trial, name) for name, dim in searched.items()}}
    trial_config = replace(config, head_options=options)
    tasks = [replace(task, config=trial_config) for task in template]
    started = time.perf_counter()
    scores: dict[int, float] = {}
    reported = 0  # fits of the plan's prefix reported so far
    results = fits.results(tasks)
    for index, result in results:
        scores[index] = fold_spearman(result)
        # Report the running mean over the plan's finished prefix only, so that step k always means the same
        # first k+1 fits whatever order an engine finishes them in: the pruner compares like with like.
        while reported in scores:
            reported += 1
            trial.report(float(np.mean([scores[i] for i in range(reported)])), step=reported - 1)
            if trial.should_prune():
                results.close()  # the fits not started yet are cancelled
                trial.set_user_attr("seconds", time.perf_counter() - started)
                raise optuna.TrialPruned()
    trial.set_user_attr("fold_spearman", [scores[i] for i in range(len(tasks))])
    trial.set_user_attr("seconds", time.perf_counter() - started)
    return float(np.mean(list(scores.values())))


def _prepare_dir(out: Path, overwrite: bool) -> Path:
    """A folder with a study resumes it; anything else follows the run-directory rules."""
    if (out / STUDY_FILE).is_file() and not overwrite:
        return out
    try:
        return prepare_run_dir(out, overwrite)
    except RunDirError as error:
        raise RunDirError(f"{error} (a folder holding {STUDY_FILE} resumes that search)") from None


def _identity(config: FitConfig) -> dict[str, Any]:
    return {
        **{name: getattr(config, name) for name in IDENTITY_FIELDS},
        "fixed_options": config.head_options,
        "ensemble": config.ensemble,
    }


def _open_study(out: Path, config: FitConfig):
    """Create or resume the study; trials cut off by an interruption are failed and queued again."""
    import optuna
    from optuna.samplers import TPESampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{out / STUDY_FILE}",
        load_if_exists=True,
        direction="maximize",
        sampler=TPESampler(seed=config.seeds[0], n_startup_trials=STARTUP_TRIALS),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=1),
    )
    identity = json.loads(json.dumps(_identity(config)))
    recorded = study.user_attrs.get("fit")
    if recorded is None:
        study.set_user_attr("fit", identity)
    elif recorded != identity:
        changed = sorted(k for k in identity if identity[k] != recorded.get(k))
        raise RunDirError(
            f"{out / STUDY_FILE} is a search with other settings ({', '.join(changed)} differ): resume it with "
            "the same ones, or choose another --out"
        )
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
    return study


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _write_outputs(study, config: FitConfig, out: Path, store: str) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials()
    _write_trials_csv(trials, out / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "head": config.head,
        "target": config.target,
        "cv": config.cv,
        "seeds": config.seeds,
        "trials": {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState},
        "objective": f"mean Spearman over the {config.cv}-fold CV of the training videos, seeds {config.seeds}",
    }
    if complete:
        best = study.best_trial
        summary.update(best_trial=best.number, best_value=best.value, best_options=best.params)
        _write_best_config(config, best, out / "best.yaml", store)
    (out / "tuning.json").write_text(json.dumps(summary, indent=2))
    from aqa_pipeline.report.tuning_plots import plot_tuning

    plot_tuning(study, out / "tuning.png", title=f"{config.head} · {config.target}")


def _write_trials_csv(trials, path: Path) -> None:
    names = sorted({name for t in trials for name in t.params})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", "cv_spearman", "seconds", *names])
        for t in trials:
            seconds = t.user_attrs.get("seconds")
            writer.writerow(
                [t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.6f}",
                 "" if seconds is None else f"{seconds:.1f}", *[t.params.get(n, "") for n in names]]
            )  # fmt: skip


def _write_best_config(config: FitConfig, best, path: Path, store: str) -> None:
    chosen = replace(
        config,
        head_options={**config.head_options, **best.params},
        final_model=True,
        progress=True,
    )
    header = (
        f"# aqa-fit --tune: trial {best.number}, mean CV Spearman {best.value:.4f} over the {config.cv}-fold CV "
        f"of the training videos (seeds {config.seeds}) of {store}.\n"
        "# That score is the best of the search on these folds (optimistic): evaluate with other --seeds.\n"
    )
    path.write_text(header + yaml.safe_dump(asdict(chosen), sort_keys=False))
