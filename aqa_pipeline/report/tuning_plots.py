"""``tuning.png`` of an ``aqa-fit --tune`` search: how the CV score moved over the trials, and which options
mattered."""

from __future__ import annotations

from pathlib import Path

from aqa_pipeline.report.run_plots import _pyplot

MIN_TRIALS_FOR_IMPORTANCE = 4  # fANOVA on fewer finished trials says nothing


def plot_tuning(study, path: Path, title: str) -> None:
    """Left: each trial's mean CV Spearman (pruned trials, crossed, at the mean of the fits they ran: early folds can score higher than the whole CV) and the best so far.
    Right: the options' importances (fANOVA), once enough trials have finished."""
    from optuna.trial import TrialState

    plt = _pyplot()
    fig, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED and t.intermediate_values]
    history.scatter([t.number for t in complete], [t.value for t in complete], label="finished", zorder=3)
    history.scatter(
        [t.number for t in pruned],
        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
        marker="x",
        color="grey",
        label="pruned (mean of the fits it ran)",
    )
    best, running = [], float("-inf")
    for t in sorted(complete, key=lambda t: t.number):
        running = max(running, t.value)
        best.append((t.number, running))
    if best:
        history.step(*zip(*best, strict=True), where="post", color="C1", label="best so far")
    history.set(xlabel="trial", ylabel="mean CV Spearman", title=title)
    history.legend(loc="lower right", fontsize=8)
    _plot_importances(study, importance, len(complete))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_importances(study, axis, finished: int) -> None:
    axis.set_title("option importance (fANOVA)")
    if finished < MIN_TRIALS_FOR_IMPORTANCE:
        axis.text(0.5, 0.5, f"needs {MIN_TRIALS_FOR_IMPORTANCE} finished trials", ha="center", va="center")
        axis.set_axis_off()
        return
    import optuna

    scores = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    names = list(scores)[::-1]
    axis.barh(names, [scores[n] for n in names])
    axis.set_xlabel("share of the CV score's variance")
