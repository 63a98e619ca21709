"""The benchmarks' Fis-V store: the released Video Swin features of the 400 training videos, imported from
``$AQA_DATA_DIR/fisv`` into a scratch folder (None when the data is not there)."""

from __future__ import annotations

import os
from pathlib import Path


def import_fisv_store(scratch: Path) -> Path | None:
    data = os.environ.get("AQA_DATA_DIR")
    if not data or not (Path(data) / "fisv").is_dir():
        return None
    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.store.importer import import_npy_features

    store = Path(scratch) / "fisv.h5"
    import_npy_features(
        load_manifest("fis-v"),
        Path(data) / "fisv" / "swintx_avg_fps25_clip32",
        store,
        kind="vst",
        provenance={"dim": 1024},
        splits=("train",),
        progress=False,
    )
    return store
