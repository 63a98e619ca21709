"""The user's copy of a dataset, checked against its manifest before any work starts.

A reproduction that silently ran on 900 of 1059 training videos would print numbers comparable with nothing, so
a folder with any manifest video missing is refused, every missing video named on its own line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aqa_pipeline.extract.jobs import find_video
from aqa_pipeline.manifests import Manifest


@dataclass(frozen=True)
class FolderCheck:
    folder: Path
    dataset: str
    expected: dict[str, int]  # samples per split in the manifest
    found: dict[str, int]  # samples per split whose video file exists
    missing: tuple[str, ...]  # manifest video names without a file, in manifest order

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        counts = ", ".join(
            f"{split} {self.found.get(split, 0)}/{n}" for split, n in sorted(self.expected.items())
        )
        return f"{self.dataset}: {self.folder}: samples with their video: {counts}"

    def refusal(self) -> str:
        """The error for an incomplete folder: the counts, then one missing video per line."""
        lines = [
            f"{self.summary()}; {len(self.missing)} videos are missing (nothing was run):",
            *(f"  missing {self.folder / name}.* (video {name!r})" for name in self.missing),
        ]
        return "\n".join(lines)


def check_folder(manifest: Manifest, folder: str | Path) -> FolderCheck:
    """Which manifest samples have their source video under ``folder`` (named as the manifest's ``video``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{manifest.name}: dataset folder {folder} does not exist")
    present = {row.video: find_video(folder, row.video).is_file() for row in manifest.rows}
    found = Counter(row.split for row in manifest.rows if present[row.video])
    missing = tuple(video for video, exists in present.items() if not exists)
    return FolderCheck(folder, manifest.name, manifest.split_counts(), dict(found), missing)
