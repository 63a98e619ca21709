"""Tracking a wave of samples together: one lock-step NanoTrack V2 call for up to ``track_batch`` videos.

The tracker is several times faster per frame when it steps many videos at once (one network forward for all), so
each decoding worker tracks the samples it has in flight together instead of one after the other. It needs
full-resolution frames, which stay in the worker: every sample's frames are decoded lazily in chunks as the
tracker asks for them, so memory is one chunk per video tracked, never a whole video.

A lock-step call fails as a whole on a bad initial box, so everything that can go wrong for one sample is settled
before it: its first frame is decoded, its box resolved (the user's, or the largest person the detector finds) and
checked against the frame. A decode error later on ends only that sample's frames: the tracker drops it like a
video that ended, and it is reported as failed while the others finish.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.detect.crops import select_person
from aqa_pipeline.track.nanotrack import NanoTracker, check_init_box
from aqa_pipeline.video.decode import read_frames

DECODE_CHUNK = 32  # frames decoded at a time per tracked video


@dataclass(frozen=True)
class TrackRequest:
    """One sample to track: source frames ``[first, stop)`` of ``path`` (read through its open ``reader``)."""

    id: str
    path: str
    reader: Any
    first: int
    stop: int


@dataclass
class WaveTracks:
    """A wave's outcome: every request is in exactly one of the two mappings."""

    tracks: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # id → (stop - first, 5) x1, y1, x2, y2, score
    failures: dict[str, str] = field(default_factory=dict)  # id → reason


def wave_tracker(options: ActorOptions, device: str) -> NanoTracker:
    """The worker's tracker. Off the CPU it gets its own copy of the network, so that ``options.tracker`` stays
    on the CPU for later runs with worker processes (CUDA cannot be used in forked workers). The crop is cv2's
    on every device: the boxes stay those of a CPU run, and 255-pixel patches, not whole frames, go to the GPU."""
    model = options.tracker if device == "cpu" else copy.deepcopy(options.tracker)
    return NanoTracker(device=device, variant=options.tracker_variant, crop="cv2", model=model)


def track_wave(
    tracker: NanoTracker, requests: Sequence[TrackRequest], options: ActorOptions, max_batch: int
) -> WaveTracks:
    """Track ``requests`` in lock-step (at most ``max_batch`` at once); one sample's failure is its own."""
    out = WaveTracks()
    first_frames = _first_frames(requests, out.failures)
    boxes = _initial_boxes(options, first_frames, out.failures)
    live = [request for request in requests if request.id in boxes]
    decode_errors: dict[str, str] = {}
    videos = [
        _guarded(_frames(request, first_frames.pop(request.id)), request.id, decode_errors)
        for request in live
    ]
    try:
        results = tracker.track(videos, [boxes[request.id] for request in live], max_batch=max_batch)
    except Exception as error:  # noqa: BLE001 - unforeseen: shared by the lock-step call, so by its samples
        out.failures |= {
            request.id: f"tracking (lock-step with {len(live)} videos): {error}" for request in live
        }
        return out
    for request, (track_boxes, scores) in zip(live, results, strict=True):
        if request.id in decode_errors:
            out.failures[request.id] = decode_errors[request.id]
        elif len(scores) != request.stop - request.first:
            out.failures[request.id] = (
                f"decode error: {len(scores)} of {request.stop - request.first} frames read"
            )
        else:
            out.tracks[request.id] = np.concatenate([track_boxes, scores[:, None]], axis=1).astype(np.float32)
    return out


def _first_frames(requests: Sequence[TrackRequest], failures: dict[str, str]) -> dict[str, np.ndarray]:
    frames = {}
    for request in requests:
        try:
            frames[request.id] = read_frames(request.path, [request.first], request.reader)[0]
        except Exception as error:  # noqa: BLE001 - that sample fails, the wave goes on
            failures[request.id] = f"decode error: {error}"
    return frames


def _initial_boxes(
    options: ActorOptions, first_frames: dict[str, np.ndarray], failures: dict[str, str]
) -> dict[str, np.ndarray]:
    """Each sample's checked first-frame box: the user's, or the largest person detected (in one batch)."""
    given: dict[str, Any] = {}
    for video_id in first_frames:
        try:
            given[video_id] = options.init_box(video_id)
        except ValueError as error:
            failures[video_id] = f"tracking: {error}"
    to_detect = [video_id for video_id, box in given.items() if box is None]
    if to_detect:
        try:
            detections = options.detector.detect([first_frames[video_id] for video_id in to_detect])
        except Exception as error:  # noqa: BLE001 - only the samples that needed the detector fail
            failures |= {video_id: f"tracking: person detector: {error}" for video_id in to_detect}
            detections = []
        for video_id, found in zip(to_detect, detections, strict=False):
            index = select_person(found, "largest", None)
            given[video_id] = None if index is None else found.boxes[index]
        given = {video_id: box for video_id, box in given.items() if video_id not in failures}
    boxes = {}
    for video_id, box in given.items():
        height, width = first_frames[video_id].shape[:2]
        try:
            if box is None:
                raise ValueError("the person detector found no target on the first frame")
            boxes[video_id] = check_init_box(box, width, height)
        except ValueError as error:
            failures[video_id] = f"tracking: {error}"
    return boxes


def _frames(request: TrackRequest, first_frame: np.ndarray) -> Iterator[np.ndarray]:
    """The sample's frames from its (already decoded) first one on, the rest decoded ``DECODE_CHUNK`` at a time."""
    yield first_frame
    for start in range(request.first + 1, request.stop, DECODE_CHUNK):
        yield from read_frames(
            request.path, range(start, min(start + DECODE_CHUNK, request.stop)), request.reader
        )


def _guarded(frames: Iterable[np.ndarray], video_id: str, errors: dict[str, str]) -> Iterator[np.ndarray]:
    """``frames`` until a decode error, which is recorded for ``video_id`` and ends them (the tracker drops it)."""
    try:
        yield from frames
    except Exception as error:  # noqa: BLE001 - ends this video only
        errors[video_id] = f"decode error: {error}"


__all__ = ["DECODE_CHUNK", "TrackRequest", "WaveTracks", "track_wave", "wave_tracker"]
