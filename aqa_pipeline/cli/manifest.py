"""``aqa-manifest``: rebuild the checked-in dataset manifests from the official annotation files, or inspect one."""

from __future__ import annotations

import click

from aqa_pipeline.cli.common import echo_json, json_option, verbose_option, version_option
from aqa_pipeline.cli.errors import AqaGroup
from aqa_pipeline.manifests import DATASETS  # light: the module defers scipy to the AQA-7 builder


@click.group(cls=AqaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
@version_option
def main() -> None:
    """Build and inspect dataset manifests (one CSV per dataset: ids, splits, scores, sub-scores).

    \b
    Examples:
      aqa-manifest show fis-v
      aqa-manifest show fis-v --json
      aqa-manifest show path/to/custom.csv
      aqa-manifest build --dataset mtl-aqa --annotations $AQA_DATA_DIR/annotations/mtl-aqa
      aqa-manifest build --dataset all --annotations $AQA_DATA_DIR/annotations
      aqa-manifest build --dataset fis-v --annotations ./fis-v --out /tmp/fis-v.csv
    """


@main.command()
@click.option(
    "--dataset",
    "dataset",
    required=True,
    type=click.Choice([*DATASETS, "all"]),
    help="Dataset to build, or 'all' (then --annotations holds one sub-folder per dataset).",
)
@click.option(
    "--annotations",
    "annotations_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder with the official annotation files (the dataset's own folder, or its parent).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output CSV (default: the manifests folder in use — the checkout's manifests/, or $AQA_MANIFEST_DIR). "
    "Not with 'all'.",
)
@json_option
def build(dataset: str, annotations_dir: str, out: str | None, as_json: bool) -> None:
    """Build manifests from the official annotation files; refuses files whose split sizes differ from the
    published ones.

    \b
    Example:
      aqa-manifest build --dataset aqa-7 --annotations $AQA_DATA_DIR/annotations/aqa-7
    """
    import warnings

    from aqa_pipeline.manifests import build_manifest, manifest_path, write_manifest

    if dataset == "all" and out is not None:
        raise click.UsageError("--out names one file; with --dataset all, set $AQA_MANIFEST_DIR instead")
    built = []
    for name in DATASETS if dataset == "all" else (dataset,):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manifest = build_manifest(name, annotations_dir)
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        path = write_manifest(manifest, out or manifest_path(name))
        built.append(
            {"name": name, "samples": len(manifest), "splits": manifest.split_counts(), "path": str(path)}
        )
        if not as_json:
            counts = ", ".join(f"{split} {n}" for split, n in sorted(manifest.split_counts().items()))
            click.echo(f"{name}: {len(manifest)} samples ({counts}) -> {path}")
    if as_json:
        echo_json(built)


@main.command()
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Summarise a manifest: samples per split, columns, score range, classes.

    NAME is a dataset name (mtl-aqa, aqa-7, finediving, rhythmic-gymnastics, fis-v, mit-skating) or a CSV path.

    \b
    Example:
      aqa-manifest show rhythmic-gymnastics
    """
    from collections import Counter

    from aqa_pipeline.manifests import LEADING_COLUMNS, load_manifest

    manifest = load_manifest(name)
    scores = [row.score for row in manifest.rows]
    if as_json:
        echo_json(
            {
                "name": manifest.name,
                "source": str(manifest.source),
                "samples": len(manifest),
                "splits": manifest.split_counts(),
                "columns": [*LEADING_COLUMNS, *manifest.subscore_names],
            }
        )
        return
    click.echo(f"manifest   {manifest.name} ({manifest.source})")
    click.echo(f"samples    {len(manifest)}")
    for split, count in sorted(manifest.split_counts().items()):
        click.echo(f"  {split:<8} {count}")
    click.echo(f"columns    {','.join([*LEADING_COLUMNS, *manifest.subscore_names])}")
    if scores:
        click.echo(f"score      {min(scores):g} .. {max(scores):g}")
    for subscore in manifest.subscore_names:
        values = [row.subscores[subscore] for row in manifest.rows if subscore in row.subscores]
        if values:
            click.echo(f"  {subscore:<16} {min(values):g} .. {max(values):g} ({len(values)} known)")
    classes = Counter(row.action_class for row in manifest.rows if row.action_class is not None)
    if classes:
        shown = ", ".join(f"{c} {n}" for c, n in classes.most_common(8))
        more = f", ... ({len(classes)} classes)" if len(classes) > 8 else ""
        click.echo(f"classes    {shown}{more}")


if __name__ == "__main__":
    main()
