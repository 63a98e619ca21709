"""File locks of the store's own, taken with ``flock`` so they hold whatever HDF5's file locking is set to.

Two locks exist: one per shard (held by its writer for the whole run, so a second writer of the same shard is
refused at once instead of corrupting the partial file) and one per index (held while a shard is checked,
published and the index rewritten, so concurrent writers of different shards publish one after another).
Both live beside the file they guard as ``<name>.lock``; the kernel releases them when a process dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aqa_pipeline.store.schema import StoreError

LOCK_SUFFIX = ".lock"


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


class ShardLock:
    """An exclusive, non-blocking lock on one shard; refuses with the holder's pid when taken."""

    def __init__(self, shard: Path) -> None:
        self.path = lock_path(shard)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"shard {self.path.name[: -len(LOCK_SUFFIX)]} is being written by another process (pid {holder}); "
                "wait for it to finish or write another shard"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextmanager
def index_lock(index_path: Path) -> Iterator[None]:
    """Serialise check-and-publish steps on one store (blocking: publishing takes well under a second)."""
    with open(lock_path(index_path), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
