"""``aqa-fit``: train and evaluate a scoring head on a feature store, or score a store with a saved run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from aqa_pipeline.cli.errors import AqaCommand
from aqa_pipeline.heads.registry import head_names


def _parse_set(values: tuple[str, ...]) -> dict:
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
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--head", type=click.Choice(head_names()), help="Scoring head to train.")
@click.option(
    "--target", default=None, help="Label to predict: score, tes, pcs, execution, ... [default: score]"
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory to write.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON/YAML experiment file (keys: head, target, feature, cv, seeds, protocol, head_options, ...); "
    "command-line flags override it.",
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
    help="Share of training videos held out for epoch selection.",
)
@click.option("--gpu", type=int, default=None, help="CUDA device index (default: CPU).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: all cores). Give each of several runs side by side its share "
    "(e.g. --threads 1 for two runs on two cores); more threads than free cores slows every run down.",
)
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(
    store,
    head,
    target,
    out_dir,
    config_file,
    feature,
    cv,
    seed,
    n_seeds,
    protocol,
    sets,
    label_norm,
    use_dd,
    val_fraction,
    gpu,
    threads,
    final_model,
    predict_run,
    split,
    quiet,
) -> None:
    """Train a scoring head on cached features and evaluate it honestly.

    \b
    Examples:
      aqa-fit --head svr fisv.h5 --target tes --cv 5 --seeds 3 --out runs/svr-tes
      aqa-fit --head gdlt fisv.h5 --target pcs --cv 5 --out runs/gdlt-pcs --set epochs=100
      aqa-fit --head tpt mtl.h5 --use-dd --out runs/tpt      # train split → test split
      aqa-fit --predict runs/svr-tes other.h5                 # score another store with a saved run

    With a test split in the store, the head trains on train and is scored on test; without one (or with --cv K)
    it reports K-fold cross-validation on train. Epochs are always chosen on a validation split carved from the
    training videos unless --protocol paper is given. The run directory gets metrics.json, predictions.csv,
    config.json, model.pt, plots and per-video explanations (render them with aqa-report).
    """
    import logging

    from aqa_pipeline.train.run import FitConfig, predict_store, run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if predict_run:
        rows = predict_store(predict_run, store, split=split)
        target_csv = Path(out_dir or predict_run) / f"predictions_{Path(store).stem}.csv"
        target_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(target_csv, "w") as handle:
            handle.write("id,truth,prediction\n")
            handle.writelines(f"{r['id']},{r['truth']},{r['prediction']}\n" for r in rows)
        click.echo(f"scored {len(rows)} videos → {target_csv}")
        return

    values = _read_config(config_file)
    overrides = {
        "head": head,
        "target": target,
        "feature": feature,
        "cv": cv,
        "protocol": protocol,
        "label_norm": label_norm,
        "use_dd": use_dd,
        "val_fraction": val_fraction,
        "final_model": final_model,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("head"):
        raise click.UsageError(f"--head is required (one of: {', '.join(head_names())})")
    if seed is not None or n_seeds is not None:
        first = seed if seed is not None else 0
        values["seeds"] = [first + i for i in range(n_seeds or 1)]
    values["head_options"] = {**values.get("head_options", {}), **_parse_set(sets)}
    if gpu is not None:
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError(f"--gpu {gpu}: no CUDA device is available on this machine")
        values["device"] = f"cuda:{gpu}"
    values["progress"] = not quiet
    if not out_dir:
        raise click.UsageError("--out RUN_DIR is required")
    config = FitConfig.from_dict(values)
    result = run(store, config, out_dir)
    _print_summary(result.metrics, config, out_dir)


def _print_summary(metrics: dict, config, out_dir: str) -> None:
    split = "test" if "test" in metrics else "cv"
    m = metrics[split]
    seeds = len(config.seeds)
    label = f"{split} ({config.cv or 5}-fold)" if split == "cv" else "test"
    click.echo(
        f"{config.head} · target {config.target} · {label} · {seeds} seed(s) · {metrics['seconds']:.1f} s"
    )
    for key in ("spearman", "pearson", "mse", "rl2", "rl2_abs"):
        if f"{key}_mean" in m:
            click.echo(f"  {key:9s} {m[f'{key}_mean']:.4f} ± {m[f'{key}_std']:.4f}")
        else:
            click.echo(f"  {key:9s} {m[key]:.4f}")
    if "per_class" in m:
        click.echo(f"  Fisher-z mean Spearman over classes: {m['per_class']['fisher_z_spearman']:.4f}")
    click.echo(f"  selection: {metrics['selection']}")
    if metrics.get("warning"):
        click.secho(metrics["warning"], fg="yellow", err=True)
    click.echo(f"run directory: {out_dir}")


if __name__ == "__main__":
    main()
