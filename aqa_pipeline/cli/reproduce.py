"""``aqa-reproduce``: a dataset folder (or published features) in, the seed papers' table out."""

from __future__ import annotations

from pathlib import Path

import click

from aqa_pipeline.cli.common import device_option, echo_json, json_option, verbose_option, version_option
from aqa_pipeline.cli.errors import AqaCommand
from aqa_pipeline.encoders.registry import ENCODERS
from aqa_pipeline.video.presets import PRESETS

REPRODUCIBLE = ("mtl-aqa", "aqa-7", "finediving", "rhythmic-gymnastics", "fis-v")  # plan.PLANS; a test checks


@click.command(
    cls=AqaCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.argument("dataset", type=click.Choice(REPRODUCIBLE))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="The dataset's video folder: one file per manifest 'video' (e.g. 01.mp4, sync_diving_3m/042.avi).",
)
@click.option(
    "--features",
    "features_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Start from published <id>.npy features instead (GDLT's Video Swin release: fis-v, "
    "rhythmic-gymnastics); every head then runs on them.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="reproduce",
    show_default=True,
    help="Writes <out>/<dataset>/TABLE.md, table.csv, features/ and runs/.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds per run.")
@click.option(
    "--heads",
    default=None,
    metavar="H1,H2",
    help="Only these heads (comma-separated); a baseline the papers did not use (ridge, svr) runs on the "
    "first feature store. [default: the papers' heads]",
)
@click.option(
    "--set",
    "head_sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Head option for every head that has it, e.g. --set epochs=2 (repeatable; refused if none has it).",
)
@click.option(
    "--encoder",
    type=click.Choice(list(ENCODERS)),
    default=None,
    help="Replace every stage's encoder (the table says so): when the paper's has no weights here.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="Replace every stage's preset (the table says so): for a quick smoke run.",
)
@click.option(
    "--init-box",
    default=None,
    metavar="BOX|FILE",
    help="The athlete on each sample's first frame, for the stages that track it (TSA's tubes, FSPN's actor "
    "clips): 'x1,y1,x2,y2' or a JSON file {sample id: box}; without it the detector finds the largest person.",
)
@click.option(
    "--detector-weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YOLO person detector for those stages [default: yolo11n via $AQA_WEIGHTS_DIR / cache / download].",
)
@device_option()
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for each fit.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Each aqa-fit runs its folds × seeds in this many worker processes (aqa-fit --jobs).",
)
@verbose_option
@json_option
@version_option
def main(dataset, data, features_dir, out_dir, seeds, heads, head_sets, encoder, preset, init_box,
         detector_weights, device, threads, jobs, as_json) -> None:  # fmt: skip
    """Reproduce the table of every seed paper that reports on DATASET, end to end.

    Checks the folder against the manifest (refusing, before any work, a folder with videos missing), extracts
    the features each paper used (aqa-extract, its preset and encoder), trains each paper's head under the
    honest protocol and under --protocol paper (aqa-fit), and writes TABLE.md and table.csv: head | ours honest
    | ours paper-protocol | paper's number | source. Re-running resumes: finished feature stores and finished
    runs are not redone.

    \b
    Examples:
      aqa-reproduce mtl-aqa --data /datasets/mtl-aqa/videos --device cuda:0
      aqa-reproduce fis-v --features $AQA_DATA_DIR/fisv/swintx_avg_fps25_clip32 --heads ridge,gdlt
      aqa-reproduce finediving --data DIR --seeds 1 --set epochs=2      # a quick, reduced table
    """
    from aqa_pipeline.reproduce.run import Request, reproduce

    if bool(data) == bool(features_dir):
        raise click.UsageError("give either --data VIDEO_DIR or --features NPY_DIR")
    request = Request(
        dataset=dataset,
        source=Path(data or features_dir),
        published=bool(features_dir),
        out=Path(out_dir),
        seeds=seeds,
        heads=tuple(h.strip() for h in heads.split(",") if h.strip()) if heads else (),
        head_sets=head_sets,
        encoder=encoder,
        preset=preset,
        device=device,
        threads=threads,
        jobs=jobs,
        init_box=init_box,
        detector_weights=detector_weights,
    )
    outcome = reproduce(request, log=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(outcome.as_dict())
        return
    click.echo(outcome.summary())


if __name__ == "__main__":
    main()
