"""Import published per-video ``.npy`` features (GDLT's Fis-V / RG release layout: ``<dir>/<id>.npy``, (T, D)).

Labels come from the dataset manifest. Every manifest video is accounted for in the report: imported, missing
(no file), or rejected (unreadable, wrong shape, NaN/inf) with the reason; files that match no manifest id are
listed too. The store is written through ``StoreWriter``, so an interrupted import resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from aqa_pipeline.manifests import Manifest
from aqa_pipeline.store.schema import Feature, StoreError
from aqa_pipeline.store.writer import StoreWriter


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    unmatched_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"imported {len(self.imported)}, already present {len(self.skipped_done)}, "
            f"missing {len(self.missing)}, rejected {len(self.rejected)}, files without a manifest row "
            f"{len(self.unmatched_files)}"
        ]
        if self.missing:
            lines.append(f"missing: {', '.join(self.missing[:20])}{' ...' if len(self.missing) > 20 else ''}")
        lines += [f"rejected {vid}: {why}" for vid, why in list(self.rejected.items())[:20]]
        if self.unmatched_files:
            lines.append(f"unmatched files: {', '.join(self.unmatched_files[:10])}")
        return "\n".join(lines)


def import_npy_features(
    manifest: Manifest,
    features_dir: str | Path,
    store_path: str | Path,
    *,
    kind: str,
    provenance: dict,
    splits: tuple[str, ...] | None = None,
    dtype: str | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import ``<features_dir>/<id>.npy`` for every manifest row (of ``splits``) into ``store_path``.

    ``dtype`` converts on import (e.g. ``float32``); by default the file's own float dtype is kept, which is
    lossless and, for float16 releases, halves the store and the load time.
    """
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise StoreError(f"features directory {features_dir} does not exist")
    rows = [row for row in manifest.rows if splits is None or row.split in splits]
    files = {p.stem: p for p in features_dir.glob("*.npy")}
    report = ImportReport(unmatched_files=sorted(set(files) - {row.id for row in manifest.rows}))
    dim = provenance.get("dim")
    with StoreWriter(store_path, {kind: provenance}, dataset=manifest.name) as writer:
        for row in tqdm(rows, desc=f"import {manifest.name}", disable=not progress):
            if writer.is_done(row.id):
                report.skipped_done.append(row.id)
                continue
            path = files.get(row.id)
            if path is None:
                report.missing.append(row.id)
                continue
            try:
                data = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as error:  # EOFError: an empty or cut-off file
                report.rejected[row.id] = f"{path}: unreadable ({error or type(error).__name__})"
                continue
            if not np.issubdtype(data.dtype, np.number):
                report.rejected[row.id] = f"{path}: dtype {data.dtype} is not numeric"
                continue
            if data.ndim != 2 or (dim is not None and data.shape[1] != dim):
                report.rejected[row.id] = f"{path}: shape {data.shape}, expected (T, {dim})"
                continue
            if dtype is not None:
                data = data.astype(dtype)
            times = np.arange(len(data)) * int(provenance.get("clip_len", 1))  # clip start frames
            try:
                writer.write(row.id, {kind: Feature(data, times)}, manifest.labels(row))
            except StoreError as error:
                report.rejected[row.id] = f"{path}: {error}"
                continue
            report.imported.append(row.id)
        for vid, why in report.rejected.items():
            writer.record_failure(vid, why)
    return report
