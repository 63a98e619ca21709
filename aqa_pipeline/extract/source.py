"""Worker-side decoding: jobs → typed items (uint8 clips, their frame times, the athlete-centred inputs).

Runs in DataLoader worker processes that decode and resize while the model runs, and hand over uint8 clips (4×
less to move than float). Jobs are grouped by source file; each worker takes every ``num_workers``-th source
and decodes it once for all its samples (MTL-AQA dives inside one event video). Errors become
:class:`FailedItem` (a raising worker would end the whole DataLoader).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aqa_pipeline.actors import ActorInputs, ActorOptions, actor_inputs
from aqa_pipeline.extract.jobs import VideoJob
from aqa_pipeline.extract.tracking import TrackRequest, WaveTracks, track_wave, wave_tracker
from aqa_pipeline.video.decode import open_video, read_windows
from aqa_pipeline.video.presets import Preset, SamplingPlan


@dataclass
class ClipItem:
    """One decoded sample. Clips made of the same frames (padding repeats the last one) are kept once:
    ``clips[clip_inverse[k]]`` is clip ``k``."""

    id: str
    clips: torch.Tensor  # (unique clips, L, H, W, 3) uint8
    clip_inverse: np.ndarray  # (clips,) index into ``clips``
    unique_clips: np.ndarray  # (unique clips,) index of each kept clip in the plan
    times: np.ndarray  # (clips,) source frame of each clip's first frame
    padded_frames: int
    window: tuple[int, int]  # source frames [first, stop) the sample read
    fps: float
    actor: ActorInputs | None = None

    def pin_memory(self) -> ClipItem:
        """Called by the DataLoader's pinning thread: page-locked clips copy to the GPU asynchronously."""
        self.clips = self.clips.pin_memory()
        if self.actor is not None and self.actor.actor_clips is not None:
            self.actor.actor_clips = self.actor.actor_clips.pin_memory()
        return self


@dataclass(frozen=True)
class FailedItem:
    """A video that could not be processed, and why (one line naming what and where)."""

    id: str
    reason: str


@dataclass(frozen=True)
class _Planned:
    job: VideoJob
    first: int
    stop: int
    plan: SamplingPlan


@dataclass
class _OpenSource:
    """One source video opened for its samples; jobs that cannot be read or planned are already failed."""

    path: str
    reader: Any = None
    fps: float = 0.0
    planned: list[_Planned] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)


class ClipSource(IterableDataset):
    """Yields one :class:`ClipItem` or :class:`FailedItem` per job (not in job order). With ``actors``, each item
    also carries the athlete-centred inputs of :func:`aqa_pipeline.actors.actor_inputs`; a failure there fails
    that job only.

    When the actors need tracking, each worker opens its sources in waves of at least ``actors.track_batch``
    samples and tracks a wave's samples together (:mod:`.tracking`). The tracker runs on ``track_device`` when
    the source is iterated in the main process (``workers=0``), and on the CPU in DataLoader worker processes,
    where CUDA is unsafe (they are forked).
    """

    def __init__(
        self,
        jobs: Sequence[VideoJob],
        preset: Preset,
        actors: ActorOptions | None = None,
        track_device: str = "cpu",
    ) -> None:
        self.preset = preset
        self.actors = actors if actors is not None and actors.any else None
        self.track_device = track_device
        groups: dict[str, list[VideoJob]] = defaultdict(list)
        for job in jobs:
            groups[job.path].append(job)
        self.groups = list(groups.items())

    def __iter__(self) -> Iterator[ClipItem | FailedItem]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        tracking = self.actors is not None and self.actors.needs_tracking
        tracker = wave_tracker(self.actors, "cpu" if info else self.track_device) if tracking else None
        for wave in self._waves(self.groups[worker::workers], self.actors.track_batch if tracking else 1):
            tracks = WaveTracks()
            if tracker is not None:
                tracks = track_wave(tracker, _track_requests(wave), self.actors, self.actors.track_batch)
            for source in wave:
                yield from self._decode_source(source, tracks)

    def _waves(self, groups, size: int) -> Iterator[list[_OpenSource]]:
        """Consecutive sources, opened, grouped until they hold ``size`` samples (one source may hold more)."""
        wave: list[_OpenSource] = []
        for path, jobs in groups:
            wave.append(self._open(path, jobs))
            if sum(len(source.planned) for source in wave) >= size:
                yield wave
                wave = []
        if wave:
            yield wave

    def _open(self, path: str, jobs: list[VideoJob]) -> _OpenSource:
        source = _OpenSource(path)
        try:
            source.reader = open_video(path)
            total, source.fps = len(source.reader), float(source.reader.get_avg_fps())
        except Exception as error:
            source.failed = [FailedItem(job.id, str(error)) for job in jobs]
            return source
        for job in jobs:
            try:
                source.planned.append(self._plan(job, path, total, source.fps))
            except Exception as error:
                source.failed.append(FailedItem(job.id, str(error)))
        return source

    def _plan(self, job: VideoJob, path: str, total: int, fps: float) -> _Planned:
        first, stop = self.preset.window(job.start_frame, job.end_frame, total)
        if stop <= first:
            raise ValueError(
                f"{path}: frames [{job.start_frame}, {job.end_frame}] lie outside its {total} frames"
            )
        return _Planned(job, first, stop, self.preset.plan(stop - first, fps))

    def _decode_source(self, source: _OpenSource, tracks: WaveTracks) -> Iterator[ClipItem | FailedItem]:
        yield from source.failed
        path, reader = source.path, source.reader
        for planned in source.planned:
            if planned.job.id in tracks.failures:
                yield FailedItem(planned.job.id, f"{path}: {tracks.failures[planned.job.id]}")
        planned = [p for p in source.planned if p.job.id not in tracks.failures]
        windows = [p.first + p.plan.frame_indices for p in planned]
        remaining = set(range(len(planned)))
        try:
            frame_hw = tuple(reader[0].shape[:2]) if self.actors is not None and planned else None
            for position, frames in read_windows(path, windows, self.preset.transform_frame, reader):
                item = _clip_item(planned[position], frames, source.fps)
                remaining.discard(position)
                if self.actors is not None:
                    item = self._with_actors(item, path, reader, planned[position], frame_hw, tracks)
                yield item
        except Exception as error:
            for position in sorted(remaining):
                yield FailedItem(planned[position].job.id, f"decode error: {error}")

    def _with_actors(
        self, item: ClipItem, path, reader, planned: _Planned, frame_hw, tracks: WaveTracks
    ) -> ClipItem | FailedItem:
        plan = planned.plan
        try:
            item.actor = actor_inputs(
                self.actors,
                path,
                reader,
                planned.first,
                planned.stop,
                plan.frame_indices,
                plan.clip_frames()[item.unique_clips],
                item.fps,
                frame_hw,
                self.preset.output_hw[0],
                tracks.tracks.get(item.id),
            )
        except Exception as error:  # a frame that cannot be decoded for a crop, ...
            return FailedItem(item.id, f"{path}: {error}")
        return item


def _track_requests(wave: list[_OpenSource]) -> list[TrackRequest]:
    return [
        TrackRequest(p.job.id, source.path, source.reader, p.first, p.stop)
        for source in wave
        for p in source.planned
    ]


def _clip_item(planned: _Planned, frames: np.ndarray, fps: float) -> ClipItem:
    plan = planned.plan
    starts = np.asarray(plan.clip_starts)
    _, unique, inverse = np.unique(plan.clip_frames(), axis=0, return_index=True, return_inverse=True)
    clips = frames[starts[unique][:, None] + np.arange(plan.clip_len)]
    return ClipItem(
        id=planned.job.id,
        clips=torch.from_numpy(np.ascontiguousarray(clips)),
        clip_inverse=inverse.reshape(-1),
        unique_clips=unique,
        times=planned.first + plan.frame_indices[starts],
        padded_frames=plan.padded_frames,
        window=(planned.first, planned.stop),
        fps=fps,
    )
