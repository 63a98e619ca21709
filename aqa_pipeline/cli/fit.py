"""``aqa-fit``: train and evaluate a scoring head on a feature store, or score a store with a saved run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from aqa_pipeline.cli.common import (
    device_option,
    echo_json,
    engine_option,
    json_option,
    ray_address_option,
    verbose_option,
    version_option,
)
from aqa_pipeline.cli.errors import AqaCommand
from aqa_pipeline.heads.registry import get_head, head_names
from aqa_pipeline.train.tracking import TRACKERS


def parse_set(values: tuple[str, ...]) -> dict:
    """``--set key=value`` pairs; values are JSON when they parse (numbers, lists, true/false), else strings."""
    options = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--set")
        key, raw = item.split("=", 1)
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _read_config(path: str | None) -> dict:
    if not path:
        return {}
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


@click.command(
    cls=AqaCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.argument("store", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--head", type=click.Choice(head_names()), help="Scoring head to train (see --list-heads).")
@click.option(
    "--target", default=None, help="Label to predict: score, tes, pcs, execution, ... [default: score]"
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Run directory to write (with --predict: where the scored store's predictions go).",
)
@click.option(
    "--overwrite", is_flag=True, help="Empty an existing run directory at --out first (refused without it)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run at --out: reuse the fits it finished (its fits/ folder) and fit only the rest. Also "
    "adds seeds to a finished run (--seeds 3 after --seeds 1 fits two). Refused if its settings differ.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON/YAML experiment file (keys: head, target, feature, cv, seeds, protocol, head_options, ...); "
    "a run's config.json is one. Command-line flags override it.",
)
@click.option(
    "--feature", default=None, help="Feature kind to use when the store holds several (i3d, vst, ...)."
)
@click.option(
    "--cv",
    type=click.IntRange(min=2),
    default=None,
    help="K-fold cross-validation on train (the way to choose models).",
)
@click.option("--seed", type=int, default=None, help="First random seed [default: 0].")
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Number of seeds (seed, seed+1, ...): mean ± std.",
)
@click.option(
    "--ensemble",
    type=click.IntRange(min=1),
    default=None,
    help="Train S copies of the head with different seeds and average their predictions and explanations "
    "(in every fold and in the saved model) [default: 1].",
)
@click.option(
    "--refit",
    type=click.Choice(["epochs"]),
    default=None,
    help="epochs: train the saved model on every training video for the median of the folds' best epochs, "
    "instead of holding out --val-fraction to select its epoch.",
)
@click.option(
    "--tune",
    "tune_trials",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Instead of one run: search the head's options (its search space, see --show-options) with N Optuna "
    "trials, each scored by --cv K-fold CV on the training videos [default K: 5]; options given with --set "
    "stay fixed. --out gets study.db (rerun the same command to resume), best.yaml (for --config), "
    "trials.csv and tuning.png.",
)
@click.option(
    "--protocol",
    type=click.Choice(["honest", "paper"]),
    default=None,
    help="honest: epoch selection on a validation split carved from train [default]. paper: best epoch on "
    "the evaluated videos, as the papers' code does — optimistic, and labelled so in the outputs.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Head option, e.g. --set epochs=50 (repeatable).",
)
@click.option(
    "--label-norm", default=None, help="minmax (default), paper (dataset divisor), divide:K or none."
)
@click.option(
    "--use-dd/--no-use-dd", default=None, help="Difficulty-degree protocol: learn score/DD, multiply back."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.5),
    default=None,
    help="Share of training videos held out for epoch selection [default: the head's own, shown by "
    "--show-options HEAD; 0 keeps the last epoch].",
)
@device_option(default=None)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch, per fit (default: all cores, divided among --jobs). Give each of several "
    "runs side by side its share (e.g. --threads 1 for two runs on two cores); more threads than free cores "
    "slows every run down.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Fits (folds × seeds) run side by side in this many worker processes, each with its share of the "
    "cores (see --threads). The numbers do not change, only the time.",
)
@engine_option("every fit (and every --tune trial's fits) a Ray task")
@ray_address_option
@click.option(
    "--final-model/--no-final-model",
    default=None,
    help="Also train the saved model.pt on the whole train split [default: yes].",
)
@click.option(
    "--predict",
    "predict_run",
    type=click.Path(exists=True, file_okay=False),
    help="Instead of training: score STORE with the model saved in this run directory.",
)
@click.option("--split", default=None, help="With --predict: only videos of this split.")
@click.option(
    "--log",
    "tracker",
    type=click.Choice(TRACKERS),
    default=None,
    help="Also log every epoch to TensorBoard (RUN_DIR/tensorboard) or MLflow ($MLFLOW_TRACKING_URI); "
    "needs that package installed.",
)
@click.option("--list-heads", is_flag=True, help="List the heads with what each is, and exit.")
@click.option(
    "--show-options",
    "show_options",
    type=click.Choice(head_names()),
    default=None,
    metavar="HEAD",
    help="List HEAD's options with their defaults and provenance (code / paper / chosen), and exit.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@verbose_option
@json_option
@version_option
def main(
    store,
    head,
    target,
    out_dir,
    overwrite,
    resume,
    config_file,
    feature,
    cv,
    seed,
    n_seeds,
    ensemble,
    refit,
    tune_trials,
    protocol,
    sets,
    label_norm,
    use_dd,
    val_fraction,
    device,
    threads,
    jobs,
    engine,
    ray_address,
    final_model,
    predict_run,
    split,
    tracker,
    list_heads,
    show_options,
    quiet,
    as_json,
) -> None:
    """Train a scoring head on cached features and evaluate it honestly.

    \b
    Examples:
      aqa-fit --head svr fisv.h5 --target tes --cv 5 --seeds 3 --out runs/svr-tes
      aqa-fit --head gdlt fisv.h5 --target pcs --cv 5 --out runs/gdlt-pcs --set epochs=100
      aqa-fit --head tpt mtl.h5 --use-dd --out runs/tpt      # train split → test split
      aqa-fit --head gdlt fisv.h5 --target pcs --cv 5 --seeds 3 --out runs/gdlt-pcs --resume   # continue it
      aqa-fit --predict runs/svr-tes other.h5 --out runs/svr-tes-other   # score a store with a saved run
      aqa-fit --list-heads
      aqa-fit --show-options gdlt

    With a test split in the store, the head trains on train and is scored on test; without one (or with --cv K)
    it reports K-fold cross-validation on train. A neural head chooses its epoch on a validation split carved
    from the training videos (--val-fraction, each head's own share by default; none keeps the last epoch), or on
    the scored videos with --protocol paper. The run directory gets metrics.json, predictions.csv,
    config.json (pass it back with --config to repeat the run), model.pt, plots and per-video explanations
    (render them with aqa-report; compare runs with aqa-compare). An existing non-empty --out is refused unless
    --overwrite is given. Each fit is kept in --out's fits/ as it finishes: after an interruption, the same
    command with --resume fits only what is left.
    """
    if list_heads or show_options:
        _print_catalog(show_options, as_json)
        return
    if not store:
        raise click.UsageError("missing argument STORE (the feature store's index file)")
    if not out_dir:
        raise click.UsageError("--out RUN_DIR is required")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    if resume and (predict_run or tune_trials):
        raise click.UsageError(
            "--resume continues a training run: not with --predict, and --tune resumes by rerunning its command"
        )
    from aqa_pipeline.heads.base import SubnormalsFlushed

    SubnormalsFlushed.for_this_process()  # before torch starts its threads, which inherit it
    if threads:
        import torch

        torch.set_num_threads(threads)
    if predict_run:
        _predict(predict_run, store, split, out_dir, device or "cpu", overwrite, as_json)
        return
    values = _read_config(config_file)
    overrides = {
        "head": head,
        "target": target,
        "feature": feature,
        "cv": cv,
        "ensemble": ensemble,
        "refit": refit,
        "protocol": protocol,
        "label_norm": label_norm,
        "use_dd": use_dd,
        "val_fraction": val_fraction,
        "final_model": final_model,
        "device": device,
        "log": tracker,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("head"):
        raise click.UsageError(f"--head is required (one of: {', '.join(head_names())})")
    if seed is not None or n_seeds is not None:
        first = seed if seed is not None else 0
        values["seeds"] = [first + i for i in range(n_seeds or 1)]
    values["head_options"] = {**values.get("head_options", {}), **parse_set(sets)}
    values["progress"] = not quiet
    from aqa_pipeline.train.engines import EngineChoice
    from aqa_pipeline.train.run import FitConfig, run
    from aqa_pipeline.train.rundir import RunDirError
    from aqa_pipeline.train.tracking import TrackingError

    config = FitConfig.from_dict(values)
    fits = EngineChoice(engine, jobs, threads, ray_address)
    if tune_trials:
        _tune(store, config, tune_trials, out_dir, fits, overwrite, as_json)
        return
    try:
        result = run(store, config, out_dir, overwrite=overwrite, engine=fits, resume=resume)
    except (RunDirError, TrackingError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json({"run_dir": out_dir, "head": config.head, "target": config.target, **result.metrics})
    else:
        _print_summary(result.metrics, config, out_dir)


def _tune(store, config, trials: int, out_dir: str, fits, overwrite: bool, as_json: bool) -> None:
    from dataclasses import asdict

    from aqa_pipeline.train.rundir import RunDirError
    from aqa_pipeline.train.tune import tune

    try:
        result = tune(store, config, trials, out_dir, engine=fits, overwrite=overwrite)
    except RunDirError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json({"run_dir": out_dir, "head": config.head, "target": config.target, **asdict(result)})
        return
    click.echo(
        f"{config.head} · target {config.target} · {result.complete} finished, {result.pruned} pruned, "
        f"{result.failed} failed trials · {result.seconds:.1f} s"
    )
    click.echo(f"  best: trial {result.best_trial}, mean CV Spearman {result.best_value:.4f}")
    for name, value in result.best_options.items():
        click.echo(f"    {name:22s} {value!r}")
    click.echo(f"  next: aqa-fit {store} --config {out_dir}/best.yaml --seeds 3 --seed 100 --out RUN_DIR")


def _predict(
    run_dir: str, store: str, split: str | None, out_dir: str, device: str, overwrite: bool, as_json: bool
) -> None:
    """Score STORE with a saved run into its own folder; metrics when the store's videos have labels."""
    from aqa_pipeline.train.run import predict_store, write_scored_store
    from aqa_pipeline.train.rundir import RunDirError, prepare_run_dir

    try:
        out = prepare_run_dir(out_dir, overwrite)
    except RunDirError as error:
        raise click.ClickException(str(error)) from None
    rows = predict_store(run_dir, store, split=split, device=device)
    metrics = write_scored_store(out, rows)
    if as_json:
        echo_json({"run_dir": str(out), "model": run_dir, "n": len(rows), "metrics": metrics})
        return
    click.echo(f"scored {len(rows)} videos with {run_dir} → {out / 'predictions.csv'}")
    for key, value in (metrics or {}).items():
        click.echo(f"  {key:9s} {value:.4f}" if key != "n" else f"  {key:9s} {value}")
    if metrics is None:
        click.echo("  (no labels in the store: no metrics)")


def _print_catalog(show_options: str | None, as_json: bool) -> None:
    """--list-heads / --show-options HEAD."""
    from dataclasses import asdict

    from aqa_pipeline.heads.catalog import head_options, list_heads

    if show_options:
        options = head_options(show_options)
        if as_json:
            echo_json([asdict(o) for o in options])
            return
        click.echo(f"{show_options} options (change with --set KEY=VALUE):")
        for o in options:
            shown = json.dumps(o.default)
            click.echo(f"  {o.name:16s} {shown:24s} {o.provenance or '(from ' + o.defined_in + ')'}")
        head = get_head(show_options)
        if head.uses_validation:
            share = head.default_val_fraction
            carve = f"{share:.0%} of the training videos" if share else "none, the last epoch is kept"
            click.echo(f"validation carve (--val-fraction): {carve}")
        return
    heads = list_heads()
    if as_json:
        echo_json([asdict(h) for h in heads])
        return
    for h in heads:
        click.echo(f"  {h.name:13s} {h.summary}")
    click.echo("Options of one head: aqa-fit --show-options HEAD")


def _print_summary(metrics: dict, config, out_dir: str) -> None:
    split = "test" if "test" in metrics else "cv"
    m = metrics[split]
    seeds = len(config.seeds)
    label = f"{split} ({config.cv or 5}-fold)" if split == "cv" else "test"
    click.echo(
        f"{config.head} · target {config.target} · {label} · {seeds} seed(s) · {metrics['seconds']:.1f} s"
    )
    for key in ("spearman", "pearson", "mse", "rl2", "rl2_abs"):  # means over seeds, as in metrics.json
        spread = f" ± {m[f'{key}_std']:.4f}" if seeds > 1 else ""
        click.echo(f"  {key:9s} {m[key]:.4f}{spread}")
    if "per_class" in m:
        click.echo(f"  Fisher-z mean Spearman over classes: {m['per_class']['fisher_z_spearman']:.4f}")
    click.echo(f"  selection: {metrics['selection']}")
    if metrics.get("warning"):
        click.secho(metrics["warning"], fg="yellow", err=True)
    click.echo(f"run directory: {out_dir}")


if __name__ == "__main__":
    main()
