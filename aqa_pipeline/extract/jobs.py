"""Stage one's job list: one :class:`VideoJob` per sample (a manifest row or a user's file), and this shard's part.

Sharding is deterministic (sample position ``% num_shards``), so shards can run as independent jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class VideoJob:
    """One sample to extract: a frame range (or the whole file) of a source video, and its labels."""

    id: str
    path: str
    start_frame: int | None = None
    end_frame: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)


def find_video(video_root: str | Path, name: str) -> Path:
    """The file for manifest video ``name`` under ``video_root``: ``name`` itself if it has a video extension,
    else the first ``name.<ext>`` that exists (``name.mp4`` if none does: extraction then reports it missing)."""
    root = Path(video_root)
    if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
        return root / name
    for extension in VIDEO_EXTENSIONS:
        candidate = root / f"{name}{extension}"
        if candidate.is_file():
            return candidate
    return root / f"{name}.mp4"


def jobs_from_manifest(manifest, video_root: str | Path) -> list[VideoJob]:
    """One job per manifest row; a missing file is not an error here but a recorded failure at extraction."""
    return [
        VideoJob(
            id=row.id,
            path=str(find_video(video_root, row.video)),
            start_frame=row.start_frame,
            end_frame=row.end_frame,
            labels=manifest.labels(row),
        )
        for row in manifest.rows
    ]


def jobs_from_paths(paths: Sequence[str | Path]) -> list[VideoJob]:
    """Users' own videos: id = file stem (must be unique), no labels, split ``unlabelled``."""
    jobs, seen = [], {}
    for path in map(Path, paths):
        if path.stem in seen:
            raise ValueError(
                f"{path} and {seen[path.stem]} would both get video id {path.stem!r}; rename one"
            )
        seen[path.stem] = path
        jobs.append(VideoJob(id=path.stem, path=str(path), labels={"split": UNLABELLED}))
    return jobs


def shard_jobs(jobs: Sequence[VideoJob], num_shards: int, shard_index: int) -> list[VideoJob]:
    """This shard's jobs: position ``% num_shards == shard_index`` in the given (manifest) order."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index {shard_index} must be in 0..{num_shards - 1}")
    return [job for i, job in enumerate(jobs) if i % num_shards == shard_index]
