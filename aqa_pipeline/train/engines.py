"""Where the fits of a run (and of a tuning trial) execute: in this process, in worker processes
(``aqa-fit --jobs N``), or as Ray tasks (``aqa-fit --engine ray``).

Every engine takes the same ``FitTask`` list and yields ``FoldResult``s as they finish; ``run`` and ``tune`` put
them back in plan order, so an engine changes the wall-clock time and nothing else. Each fit is seeded, and a
worker fits with the thread count it is given, so the numbers match the in-process engine's up to floating-point
summation order (exactly, for the closed-form heads and with one thread per fit).

Workers load the store once each (processes) or receive it once through Ray's object store; a task then carries
only its settings and its fold's row indices.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.ray_cluster import import_ray, ray_session
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.train.fitting import FitConfig, FitTask, FoldResult, LoadedData, fit_task, load_data
from aqa_pipeline.train.tracking import Tracker

ENGINES = ("local", "ray")


class FitEngine(Protocol):
    tracks_epochs: bool  # whether the run's tracker saw each epoch live (else ``run`` logs each finished fit)

    def results(self, tasks: Sequence[FitTask]) -> Iterator[tuple[int, FoldResult]]:
        """(index into ``tasks``, its result) in the order the fits finish. Closing the iterator early cancels
        the fits not yet started (a pruned tuning trial)."""

    def close(self) -> None: ...


def default_threads(jobs: int) -> int:
    """Torch threads per fit when ``jobs`` fits share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


@dataclass
class InProcessEngine:
    """One fit after the other in this process; the tracker sees every epoch as it happens."""

    loaded: LoadedData
    tracker: Tracker | None = None

    @property
    def tracks_epochs(self) -> bool:
        return self.tracker is not None

    def results(self, tasks: Sequence[FitTask]) -> Iterator[tuple[int, FoldResult]]:
        for index, task in enumerate(tasks):
            on_epoch = None
            if self.tracker is not None:
                on_epoch = partial(self.tracker.log_epoch, task.run_name)
            yield index, fit_task(task, get_head(task.config.head), self.loaded, on_epoch)

    def close(self) -> None:
        pass


# -- worker processes ---------------------------------------------------------------------------------------
_WORKER_DATA: LoadedData | None = None  # the store as this worker process loaded it


def end_with_parent(parent_pid: int) -> None:
    """Have the kernel end this process when ``parent_pid`` (the process that started it) dies, as it does when a
    scheduler's SIGTERM or an OOM kill reaches only ``aqa-fit``: otherwise the worker fits on for nobody. Ctrl-C
    reaches the whole process group anyway. Linux only (``prctl``); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the request was made
        os._exit(1)


def _load_in_worker(store_path: str, config: FitConfig, threads: int, parent_pid: int) -> None:
    import torch

    from aqa_pipeline.heads.base import SubnormalsFlushed

    global _WORKER_DATA
    end_with_parent(parent_pid)
    SubnormalsFlushed.for_this_process()
    torch.set_num_threads(threads)
    _WORKER_DATA = load_data(FeatureStore(store_path), config, get_head(config.head))


def _fit_in_worker(task: FitTask) -> FoldResult:
    return fit_task(task, get_head(task.config.head), _WORKER_DATA)


class ProcessEngine:
    """``jobs`` worker processes (spawned: a forked torch can deadlock in its thread pool), each loading the
    store once and fitting with ``threads`` torch threads, and ending when this process does."""

    tracks_epochs = False

    def __init__(self, store_path: str | Path, config: FitConfig, jobs: int, threads: int) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=get_context("spawn"),
            initializer=_load_in_worker,
            initargs=(str(store_path), config, threads, os.getpid()),
        )

    def results(self, tasks: Sequence[FitTask]) -> Iterator[tuple[int, FoldResult]]:
        pending: dict[Future, int] = {self.pool.submit(_fit_in_worker, t): i for i, t in enumerate(tasks)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# -- Ray ----------------------------------------------------------------------------------------------------
def _fit_on_ray(task: FitTask, loaded: LoadedData, threads: int) -> FoldResult:
    import torch

    from aqa_pipeline.heads.base import SubnormalsFlushed

    SubnormalsFlushed.for_this_process()
    torch.set_num_threads(threads)
    return fit_task(task, get_head(task.config.head), loaded)


class RayEngine:
    """Each fit a Ray task of ``threads`` CPUs (or one GPU when the device is cuda) on the cluster at
    ``address`` (``None``: a local Ray started here). The loaded store goes into Ray's object store once."""

    tracks_epochs = False

    def __init__(self, loaded: LoadedData, address: str | None, threads: int, gpu: bool) -> None:
        self.session = ExitStack()
        self.ray = self.session.enter_context(ray_session(address))
        self.loaded_ref = self.ray.put(loaded)
        self.threads = threads
        self.remote_fit = self.ray.remote(num_cpus=threads, num_gpus=1 if gpu else 0)(_fit_on_ray)

    def results(self, tasks: Sequence[FitTask]) -> Iterator[tuple[int, FoldResult]]:
        pending = {self.remote_fit.remote(t, self.loaded_ref, self.threads): i for i, t in enumerate(tasks)}
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                yield pending[done[0]], self.ray.get(done[0])
                del pending[done[0]]
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class EngineChoice:
    """What ``--engine``, ``--ray-address``, ``--jobs`` and ``--threads`` asked for."""

    name: str = "local"
    jobs: int = 1
    threads: int | None = None  # per fit; default: the cores divided among the jobs
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"unknown engine {self.name!r}: one of {', '.join(ENGINES)}")
        if self.jobs < 1:
            raise ValueError(f"jobs={self.jobs}: expected at least 1 parallel fit")
        if self.ray_address and self.name != "ray":
            raise ValueError("--ray-address needs --engine ray")
        if self.name == "ray":
            import_ray()  # installed? (before the store loads)

    def open(
        self, store_path: str | Path, config: FitConfig, loaded: LoadedData, tracker: Tracker | None
    ) -> FitEngine:
        threads = self.threads or default_threads(self.jobs)
        if self.name == "ray":
            return RayEngine(loaded, self.ray_address, threads, gpu=config.device.startswith("cuda"))
        if self.jobs > 1:
            return ProcessEngine(store_path, config, self.jobs, threads)
        return InProcessEngine(loaded, tracker)
