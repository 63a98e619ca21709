"""Per-video checksums: written with every feature, verified before a shard is published and on every read, so
bit-rot or a torn write is named (shard, video, kind) instead of flowing into training as garbage."""

from __future__ import annotations

import zlib

import h5py
import numpy as np

CHECKSUM_ATTR = "crc32"


def checksum(data: np.ndarray, times: np.ndarray) -> int:
    """CRC-32 of the feature bytes then the time axis (fast enough to run on every load)."""
    crc = zlib.crc32(memoryview(np.ascontiguousarray(data)).cast("B"))
    return zlib.crc32(memoryview(np.ascontiguousarray(times)).cast("B"), crc)


def video_problems(group: h5py.Group) -> list[str]:
    """What is wrong with one stored video (every kind): unreadable datasets or a checksum mismatch."""
    problems = []
    for kind in group:
        try:
            data, times = group[kind]["data"][()], group[kind]["times"][()]
        except (OSError, KeyError, RuntimeError) as error:
            problems.append(f"{kind}: unreadable ({error})")
            continue
        expected = group[kind].attrs.get(CHECKSUM_ATTR)
        if expected is not None and int(expected) != checksum(data, times):
            problems.append(f"{kind}: checksum mismatch (corrupted bytes)")
    return problems
