"""``aqa-score``: your own videos → the saved run's features → its scores, in one command."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from aqa_pipeline.cli.common import device_option, echo_json, json_option, verbose_option, version_option
from aqa_pipeline.cli.errors import AqaCommand


@click.command(
    cls=AqaCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--model", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
    help="A run directory of aqa-fit (its model.pt and run.json say which features to make).",
)  # fmt: skip
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for features.h5, scores.csv and report/ (a page per video) [default: RUN/scored].",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Explicit encoder checkpoint.")
@device_option()
@verbose_option
@json_option
@version_option
def main(videos, run_dir, out, weights, device, as_json) -> None:
    """Score VIDEO files with a trained model: extracts exactly the features the run was trained on (encoder,
    preset, normalisation, from its model.json), predicts, and writes an HTML page per video showing what drove
    its score. A rerun does not extract again; a video that fails is reported and the others are scored.

    \b
    Example:
      aqa-score my_programme.mp4 --model runs/weight-score-tes --out scored/
    """
    from aqa_pipeline.scoring import score

    scores = score(videos, run_dir, out, device=device, weights=weights, progress=not as_json)
    if as_json:
        for entry in scores:
            echo_json(_as_json(entry))
    else:
        width = max(len(s.id) for s in scores) if scores else 5
        click.echo(f"{'video':<{width}}  score")
        for s in scores:
            click.echo(
                f"{s.id:<{width}}  {s.score:.3f}"
                if s.error is None
                else f"{s.id:<{width}}  failed: {s.error}"
            )
        pages = [s.page for s in scores if s.page]
        if pages:
            click.echo(f"report: {Path(pages[0]).parent.parent / 'index.html'}")
    sys.exit(1 if any(s.error for s in scores) else 0)


def _as_json(entry) -> dict:
    """One video for scripts: the score, its page and the moments that moved it most (in points)."""
    view = entry.explanation
    return {
        "id": entry.id,
        "path": entry.path,
        "score": entry.score,
        "error": entry.error,
        "page": entry.page,
        "sub_scores": entry.sub_scores,
        "baseline": None if view is None else view.baseline,
        "top_moments": [] if view is None else [asdict(m) for m in view.top(3)],
    }
