"""Decoding videos to uint8 RGB frames with decord, with errors that name the file.

Datasets such as MTL-AQA cut many samples (dives) out of one long source video. ``read_windows`` decodes each
needed frame of a source once, in increasing order, and hands every window its frames, instead of seeking back
into the file for every sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Frames decoded per decord call: bounds memory at native resolution while keeping calls few.
_CHUNK = 32


class VideoDecodeError(RuntimeError):
    """A video is missing, unreadable or shorter than the frames asked of it; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    height: int
    width: int


def open_video(path: str | Path, num_threads: int = 1):
    """A decord ``VideoReader`` for ``path``; ``num_threads=1`` because parallelism comes from worker processes."""
    import decord

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such video file")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as error:  # decord raises its own DECORDError / RuntimeError subclasses
        raise VideoDecodeError(f"{path}: cannot open as a video ({_first_line(error)})") from error
    if len(reader) == 0:
        raise VideoDecodeError(f"{path}: the video has no frames")
    return reader


def probe(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size, read from the container (no full decode)."""
    reader = open_video(path)
    height, width = reader[0].shape[:2]
    return VideoInfo(str(path), len(reader), float(reader.get_avg_fps()), int(height), int(width))


def read_frames(path: str | Path, indices: Sequence[int], reader=None) -> np.ndarray:
    """Frames ``indices`` of ``path`` as uint8 (N, H, W, 3); indices may repeat and need not be sorted."""
    reader = reader if reader is not None else open_video(path)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError(f"{path}: no frame indices requested")
    if indices.min() < 0 or indices.max() >= len(reader):
        raise VideoDecodeError(
            f"{path}: frame indices {int(indices.min())}..{int(indices.max())} requested but the video has "
            f"{len(reader)} frames"
        )
    unique, inverse = np.unique(indices, return_inverse=True)
    try:
        frames = np.concatenate(
            [
                reader.get_batch(unique[i : i + _CHUNK].tolist()).asnumpy()
                for i in range(0, len(unique), _CHUNK)
            ]
        )
    except Exception as error:
        raise VideoDecodeError(f"{path}: decoding failed ({_first_line(error)})") from error
    return frames[inverse]


def read_windows(
    path: str | Path,
    windows: Sequence[Sequence[int]],
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    reader=None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(window_position, frames)`` for every window (a list of frame indices) of one source video.

    Windows are served in order of their first frame; each source frame is decoded (and passed through the
    per-frame ``transform``, e.g. resize + crop) once, and kept only while a later window still needs it.
    """
    reader = reader if reader is not None else open_video(path)
    order = sorted(range(len(windows)), key=lambda k: (min(windows[k]), max(windows[k])))
    cache: dict[int, np.ndarray] = {}
    for rank, position in enumerate(order):
        wanted = np.asarray(windows[position], dtype=np.int64)
        missing = sorted(set(wanted.tolist()) - cache.keys())
        if missing:
            decoded = read_frames(path, missing, reader)
            for index, frame in zip(missing, decoded, strict=True):
                cache[index] = transform(frame) if transform is not None else frame
        yield position, np.stack([cache[i] for i in wanted.tolist()])
        later = [windows[k] for k in order[rank + 1 :]]
        keep_from = min((min(w) for w in later), default=None)
        for index in [i for i in cache if keep_from is None or i < keep_from]:
            del cache[index]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
