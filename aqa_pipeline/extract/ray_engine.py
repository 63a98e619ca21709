"""``aqa-extract --engine ray``: the local engine's stages as a Ray Data pipeline, for clusters of GPUs.

* **Decoding** (:class:`~aqa_pipeline.extract.source.ClipSource`) runs as CPU tasks, one per source file (so an
  MTL-AQA event video is opened once for all its dives), each reserving ``decode_cpus``.
* **Encoding** runs in an actor pool: each actor gets the encoder once (one model load per actor), reserves
  ``cpus_per_actor`` torch threads or ``gpus_per_actor`` GPUs, and packs the clips of the items it is handed
  into batches across videos (:mod:`.batching`), as the local engine does.
* **Writing** stays on the driver: finished videos stream back and go through the store's own shard writer
  (:class:`~aqa_pipeline.extract.run.StoreOutput`), so the store contract is the local engine's: finished videos
  are skipped on resume, a failed video is recorded and the rest continue.

Why Ray Data rather than hand-rolled tasks: its streaming executor gives the back-pressure (decoded clips wait
in Ray's bounded object store, however long the job list is) and the fault tolerance: a
decode task whose worker dies is retried, and a dead encoder actor is restarted and its in-flight batch redone,
so a lost worker or node costs only its in-flight videos. If the driver itself dies, every video it wrote is
kept in the shard's partial file and the same command resumes.

The athlete-centred kinds (``--boxes``, ``--actor``, ``--crops``) come along: tracking (and detection) run in
the decoding tasks on the CPU, in lock-step waves over one source file's samples (the local engine's waves can span
files), and the crop encoder runs in the encoder actors. ``--show-pred`` and ``--limit`` stay on the local engine.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.encoders.base import FrozenEncoder
from aqa_pipeline.extract.jobs import VideoJob
from aqa_pipeline.extract.run import Extraction, ExtractSummary, PreparedRun, prepared_run
from aqa_pipeline.extract.source import ClipItem, ClipSource, FailedItem
from aqa_pipeline.extract.writer import RunKinds
from aqa_pipeline.ray_cluster import ray_session
from aqa_pipeline.store import Feature
from aqa_pipeline.video.presets import Preset

DECODE_CALLS_PER_WORKER = 1000


@dataclass(frozen=True)
class RayPlan:
    """How the pipeline uses the cluster."""

    address: str | None = None  # None: a Ray started on this machine
    actors: int = 1  # encoder actors
    cpus_per_actor: float = 1.0  # also each actor's torch threads (rounded up)
    gpus_per_actor: float = 0.0  # 1 on GPU machines: each actor owns a GPU
    decode_cpus: float = 1.0  # per decoding task

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ValueError(f"--ray-actors {self.actors}: expected at least 1 encoder actor")
        if self.cpus_per_actor <= 0 and self.gpus_per_actor <= 0:
            raise ValueError("an encoder actor needs CPUs or a GPU")
        if self.decode_cpus <= 0:
            raise ValueError(f"decode_cpus={self.decode_cpus}: a decoding task needs some CPU")


@dataclass
class FinishedVideo:
    """What an encoder actor hands back for one video: its per-kind arrays, ready for the writer."""

    id: str
    features: dict[str, Feature]
    padded_frames: int
    clips: int  # encoded (distinct) clips


@dataclass
class _Collected:
    """An :class:`Extraction` output that keeps the results in the actor, to be returned with the batch."""

    results: list[FinishedVideo | FailedItem] = field(default_factory=list)
    summary: ExtractSummary = field(default_factory=ExtractSummary)
    bar: tqdm = field(default_factory=lambda: tqdm(disable=True))
    clips: dict[str, int] = field(default_factory=dict)

    def finished(self, video_id: str, features: dict[str, Feature], padded_frames: int) -> None:
        self.results.append(FinishedVideo(video_id, features, padded_frames, self.clips.pop(video_id)))

    def failed(self, video_id: str, reason: str) -> None:
        self.results.append(FailedItem(video_id, reason))


def _decode(
    batch: dict[str, np.ndarray], groups: list[list[VideoJob]], preset: Preset, actors: ActorOptions | None
) -> dict[str, np.ndarray]:
    """One source file's samples, decoded (and tracked, cropped) in a CPU task."""
    items = [item for group in batch["group"] for item in ClipSource(groups[group], preset, actors)]
    return {"item": np.array(items, dtype=object)}


class _EncoderActor:
    """Holds one copy of the encoder; each call encodes the clips of a batch of decoded items."""

    def __init__(
        self,
        encoder: FrozenEncoder,
        kinds: RunKinds,
        actors: ActorOptions | None,
        batch_size: int,
        device: str,
        threads: int,
    ) -> None:
        torch.set_num_threads(threads)
        self.encoder = encoder.to(device)  # Ray gave a GPU actor its own GPU as cuda:0
        if actors is not None and actors.crop_encoder is not None:
            actors.crop_encoder.to(device)
        self.kinds, self.actors, self.batch_size = kinds, actors, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        output = _Collected()
        extraction = Extraction(output, self.encoder, self.kinds, self.actors, show_predictions=False)
        for item in batch["item"]:
            if isinstance(item, ClipItem):
                output.clips[item.id] = len(item.clips)
            extraction.add(item, self.batch_size)
        extraction.flush()
        clips = [getattr(result, "clips", 0) for result in output.results]
        # the call's encoder time, shared among its videos by their clips (sums to the call's time)
        share = output.summary.encode_seconds / max(1, sum(clips))
        return {"result": np.array(output.results, dtype=object), "encode_seconds": np.array(clips) * share}


def extract_features_ray(
    jobs: Sequence[VideoJob],
    store: str | Path,
    *,
    encoder: FrozenEncoder,
    preset: Preset,
    dataset: str,
    plan: RayPlan,
    actors: ActorOptions | None = None,
    batch_size: int = 4,
    num_shards: int = 1,
    shard_index: int = 0,
    progress: bool = True,
) -> ExtractSummary:
    """:func:`~aqa_pipeline.extract.run.extract_features` on Ray (module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    with prepared_run(
        jobs, store, encoder=encoder, preset=preset, dataset=dataset, device="cpu", num_shards=num_shards,
        shard_index=shard_index, limit=None, show_predictions=False, actors=actors, progress=progress,
    ) as run:  # fmt: skip
        if not run.todo:
            return run.output.summary
        summary = run.output.summary
        with ray_session(plan.address) as ray:
            for result, seconds in _stream_results(ray, run, encoder, plan, batch_size):
                summary.encode_seconds += float(seconds)
                if isinstance(result, FailedItem):
                    run.output.failed(result.id, result.reason)
                    continue
                run.output.finished(result.id, result.features, result.padded_frames)
                summary.clips += result.clips
    return run.output.summary


def _stream_results(ray, run: PreparedRun, encoder: FrozenEncoder, plan: RayPlan, batch_size: int):
    """(result, encoder seconds) per video, as the pipeline finishes them (not in job order)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's tqdm bar counts written videos
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    by_source: dict[str, list[VideoJob]] = defaultdict(list)
    for job in run.todo:
        by_source[job.path].append(job)
    groups = list(by_source.values())
    dataset = ray.data.from_items([{"group": i} for i in range(len(groups))], override_num_blocks=len(groups))
    decoded = dataset.map_batches(
        _decode,
        batch_size=1,
        fn_kwargs={"groups": groups, "preset": run.preset, "actors": run.actors},
        num_cpus=plan.decode_cpus,
        # Ray Data fuses a task stage into the next actor stage when their remote arguments match (1 CPU each
        # by default), which would decode inside the encoder actors; a max_calls keeps the stages apart, so
        # decoding runs in separate CPU tasks beside encoding. It also replaces a decoding worker after that
        # many source files (what a decoder leaks stays bounded); 256 cost start-ups on 1,000 tiny videos.
        max_calls=DECODE_CALLS_PER_WORKER,
    )
    # an item holds at least one clip, so a call of batch_size items fills at least one forward pass
    encoded = decoded.map_batches(
        _EncoderActor,
        batch_size=batch_size,
        fn_constructor_kwargs={
            "encoder": encoder,  # on the CPU here (prepared_run)
            "kinds": run.kinds,
            "actors": run.actors,
            "batch_size": batch_size,
            "device": "cuda" if plan.gpus_per_actor > 0 else "cpu",
            "threads": max(1, int(np.ceil(plan.cpus_per_actor))),
        },
        concurrency=plan.actors,
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
        # Ray Data's actor pools replace a dead actor and redo its in-flight batch by default (max_restarts and
        # max_task_retries -1); tests/test_extract_ray.py kills one to hold it to that
    )
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        yield from zip(batch["result"], batch["encode_seconds"], strict=True)
