"""Refuse a write that would fill the disk, before HDF5 hits ENOSPC (where it can crash the process and leave
temp files behind). The error is an ``OSError`` so a run stops instead of failing every remaining video."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# Room kept free beyond the bytes a write needs: HDF5 metadata, the index rewrite, the rest of the system.
MARGIN_BYTES = 64 * 2**20


class DiskFullError(OSError):
    """Not enough free space for the next write; the store is left as it was before it."""


def require_space(folder: Path, nbytes: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes + MARGIN_BYTES:
        raise DiskFullError(
            errno.ENOSPC,
            f"not enough disk space in {folder} for {what}: {free / 2**20:.0f} MiB free, need "
            f"{(nbytes + MARGIN_BYTES) / 2**20:.0f} MiB (with a {MARGIN_BYTES // 2**20} MiB margin); "
            "free some space and re-run to resume",
        )
