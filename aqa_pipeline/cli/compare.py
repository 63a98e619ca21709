"""``aqa-compare``: one table and one plot of several ``aqa-fit`` run directories."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from aqa_pipeline.cli.common import echo_json, json_option, verbose_option, version_option
from aqa_pipeline.report.compare import FORMATS, METRICS


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="What to print: an aligned table, Markdown (for a README) or CSV.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write compare.md, compare.csv and compare.png (the runs side by side) into this folder.",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default="spearman",
    show_default=True,
    help="Metric the plot shows (and the rows are sorted by, best first).",
)
@verbose_option
@json_option
@version_option
def main(runs: tuple[str, ...], fmt: str, out_dir: str | None, metric: str, as_json: bool) -> None:
    """Compare run directories: head, target, evaluation, seeds, metrics mean ± std over seeds, time.

    \b
    Examples:
      aqa-compare runs/fisv/*-tes
      aqa-compare runs/ridge-tes runs/gdlt-tes --format markdown
      aqa-compare runs/*-pcs --out runs/compare-pcs --metric pearson
    """
    from aqa_pipeline.report.compare import load_summary, plot_runs, render

    try:
        summaries = [load_summary(run) for run in runs]
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    lower_is_better = metric in ("mse", "rl2")
    summaries.sort(key=lambda r: r.mean(metric) if lower_is_better else -r.mean(metric))
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(render(summaries, "markdown") + "\n")
        (out / "compare.csv").write_text(render(summaries, "csv"))
        plot_runs(summaries, out / "compare.png", metric)
    if as_json:
        echo_json([{**asdict(r), "mean": {m: r.mean(m) for m in r.per_seed}} for r in summaries])
        return
    click.echo(render(summaries, fmt))
    if out_dir:
        click.echo(f"written: {out_dir}/compare.md, compare.csv, compare.png", err=True)


if __name__ == "__main__":
    main()
