"""``aqa-report``: render the per-video explanation report of an ``aqa-fit`` run directory."""

from __future__ import annotations

import click

from aqa_pipeline.cli.common import echo_json, json_option, verbose_option, version_option
from aqa_pipeline.cli.errors import AqaCommand


@click.command(
    cls=AqaCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write index.html and the per-video plots (default: RUN_DIR/report).",
)
@click.option(
    "--videos",
    "videos_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Folder holding the run's videos as <id>.mp4 (or .avi, .mov, ...): pages embed them and show keyframes.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@verbose_option
@json_option
@version_option
def main(run_dir: str, out_dir: str | None, videos_dir: str | None, quiet: bool, as_json: bool) -> None:
    """What drove each score: a page per video (its score, a timeline of what each clip added in points, keyframes
    and the video with --videos) and an index with the run's metrics, sortable and filterable, worst error first.

    \b
    Examples:
      aqa-report runs/fisv-weight-score-tes
      aqa-report runs/fisv-gdlt-pcs --out /tmp/gdlt-report --videos ~/data/fisv/videos
    """
    from aqa_pipeline.report.explain import write_report

    index = write_report(run_dir, out_dir, progress=not quiet, videos_dir=videos_dir)
    if as_json:
        echo_json({"run_dir": run_dir, "index": str(index)})
    else:
        click.echo(f"report: {index}")
