"""Joining a Ray cluster (or starting a local Ray) for the ``--engine ray`` paths of ``aqa-extract`` and
``aqa-fit``. Ray is an optional extra, imported only here and only when asked for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

INSTALL_HINT = "pip install 'aqa-pipeline[ray]' (or: pip install 'ray[data]')"


class RayMissingError(RuntimeError):
    """``--engine ray`` without Ray installed; the CLIs report it in one line (cli/errors.py)."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayMissingError(f"--engine ray needs Ray: {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """Ray, connected: an already initialised Ray is used as it is (tests start one with ``num_cpus=2``);
    otherwise the cluster at ``address`` (``auto``, ``head:6379``) or, with ``None``, a Ray started here, shut
    down again on exit."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
