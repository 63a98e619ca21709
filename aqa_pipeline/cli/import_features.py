"""``aqa-import``: bring published per-video features into a feature store."""

from __future__ import annotations

import time
from dataclasses import asdict

import click

from aqa_pipeline.cli.common import echo_json, json_option, verbose_option, version_option
from aqa_pipeline.cli.errors import AqaCommand

# The published feature releases, so their provenance is recorded without the user typing it: each names the
# function returning the record that our own extraction of the same recipe writes.
RELEASES = {"gdlt-vst": "aqa_pipeline.encoders.swin:gdlt_release_provenance"}


def release_provenance(release: str, source: str) -> dict:
    import importlib

    module, function = RELEASES[release].split(":")
    record = getattr(importlib.import_module(module), function)()
    return {**record.to_attrs(), "source": source}


@click.command(
    cls=AqaCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option(
    "--dataset", required=True, help="Manifest name (fis-v, rhythmic-gymnastics, ...) or a manifest CSV path."
)
@click.option(
    "--features-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of <id>.npy files, shape (T, D).",
)
@click.option(
    "--out", "store", required=True, type=click.Path(dir_okay=False), help="Index file of the store to write."
)
@click.option("--kind", default="vst", show_default=True, help="Feature kind name inside the store.")
@click.option(
    "--release",
    type=click.Choice(sorted(RELEASES)),
    default="gdlt-vst",
    show_default=True,
    help="Which published release the files are (fills in the provenance).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(["train", "test"]),
    help="Only import rows of this split (repeatable); default: every row with a file.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float16", "float32"]),
    default=None,
    help="Convert on import; default keeps the files' dtype (lossless).",
)
@verbose_option
@json_option
@version_option
def main(
    dataset: str,
    features_dir: str,
    store: str,
    kind: str,
    release: str,
    splits: tuple[str, ...],
    dtype: str | None,
    as_json: bool,
) -> None:
    """Import published per-video features with labels from the dataset manifest.

    \b
    Example (GDLT's Fis-V Video Swin features):
      aqa-import --dataset fis-v --features-dir $AQA_DATA_DIR/fisv/swintx_avg_fps25_clip32 --out fisv.h5

    Every manifest video is reported as imported, missing or rejected (with the reason). Re-running resumes.
    """
    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.store.importer import import_npy_features

    started = time.perf_counter()
    manifest = load_manifest(dataset)
    provenance = release_provenance(release, str(features_dir))
    report = import_npy_features(
        manifest, features_dir, store, kind=kind, provenance=provenance, splits=splits or None, dtype=dtype
    )
    seconds = round(time.perf_counter() - started, 2)
    if as_json:
        echo_json({"store": store, "kind": kind, "seconds": seconds, **asdict(report)})
        return
    # Videos of the requested splits without a file are expected for partial releases (e.g. train only).
    click.echo(report.summary())
    click.echo(f"store {store} (kind {kind}) in {seconds} s")


if __name__ == "__main__":
    main()
