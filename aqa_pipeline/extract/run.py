"""The extraction loop: jobs → worker-side decoding → batches across videos → encoder → one store shard.

Why it is shaped this way (the pain points of per-video, single-process extractors):

* DataLoader worker processes decode while the model runs (:mod:`.source`); the float conversion and
  normalisation happen on the model's device (:class:`aqa_pipeline.encoders.base.FrozenEncoder`).
* Clips of different videos are packed into batches of ``batch_size`` (:mod:`.batching`); on a GPU clips are
  pinned and copied asynchronously and the encoder runs under autocast.
* The store writer makes it resumable: finished videos are skipped, a failing video is recorded (in the shard
  and in ``<store>.failures-<shard>.jsonl``) while the rest continue, and Ctrl-C keeps everything finished.
* The athlete-centred kinds (tracked ``boxes``, ``*_crops``, ``<kind>_actor``; :mod:`aqa_pipeline.actors`) are
  prepared in the same workers and written by the same writer, so a video is done only when all its kinds are.
  Each worker tracks up to ``actors.track_batch`` videos together (:mod:`.tracking`), on ``device`` when
  ``workers=0`` and on the CPU in worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.detect.crops import normalise
from aqa_pipeline.encoders.base import FrozenEncoder
from aqa_pipeline.extract.batching import ACTOR, SCENE, ClipQueue, PendingVideo
from aqa_pipeline.extract.jobs import VideoJob, shard_jobs
from aqa_pipeline.extract.source import ClipItem, ClipSource, FailedItem
from aqa_pipeline.extract.writer import RunKinds, video_features, write_failures
from aqa_pipeline.store import Feature, StoreError, StoreWriter
from aqa_pipeline.video.decode import probe
from aqa_pipeline.video.presets import Preset

# aqa-extract's defaults per device type: on CPU the encoder, not decoding, is the bottleneck, so it gets every
# core beside one decoding worker, and batches beyond 4 clips only cost cache and memory
DEFAULT_BATCH_SIZE = {"cpu": 4, "cuda": 64}
DEFAULT_WORKERS = {"cpu": 1, "cuda": 4}


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: int = 0
    failed: list[FailedItem] = field(default_factory=list)
    padded: dict[str, int] = field(default_factory=dict)  # video id → padded frames, only where > 0
    clips: int = 0
    seconds: float = 0.0
    # of ``seconds``, the time in the encoder (the rest: waiting for decoded clips, writing)
    encode_seconds: float = 0.0
    failures_path: Path | None = None
    preset: Preset | None = None  # the preset as run (a 2-D encoder's per-frame form)

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0


class StoreOutput:
    """Where finished and failed videos go: the shard writer, the run's summary and its progress bar. A video
    the store refuses (e.g. NaN features) fails alone and the run goes on."""

    def __init__(
        self, writer: StoreWriter, labels: dict[str, dict], summary: ExtractSummary, bar: tqdm
    ) -> None:
        self.writer, self.labels, self.summary, self.bar = writer, labels, summary, bar

    def finished(self, video_id: str, features: dict[str, Feature], padded_frames: int) -> None:
        try:
            self.writer.write(video_id, features, labels=self.labels[video_id])
        except StoreError as error:
            self.failed(video_id, str(error))
            return
        self.summary.done.append(video_id)
        if padded_frames:
            self.summary.padded[video_id] = padded_frames
        self.bar.update(1)

    def failed(self, video_id: str, reason: str) -> None:
        self.writer.record_failure(video_id, reason)
        self.summary.failed.append(FailedItem(video_id, reason))
        self.bar.update(1)


class Extraction:
    """Items in, batches through the encoder, finished videos out to ``output`` (a :class:`StoreOutput`, or
    anything with its ``finished``/``failed`` methods and a ``summary`` and ``bar``)."""

    def __init__(
        self, output, encoder: FrozenEncoder, kinds: RunKinds, actors, show_predictions: bool
    ) -> None:
        self.output, self.encoder, self.kinds = output, encoder, kinds
        self.actors, self.show_predictions = actors, show_predictions
        self.summary, self.bar = output.summary, output.bar
        self.pending: dict[str, PendingVideo] = {}
        self.queue = ClipQueue()
        self.started = time.perf_counter()

    def add(self, item: ClipItem | FailedItem, batch_size: int) -> None:
        if isinstance(item, FailedItem):
            self.output.failed(item.id, item.reason)
            return
        streams = {SCENE: item.clips}
        if item.actor is not None and item.actor.actor_clips is not None:
            streams[ACTOR] = item.actor.actor_clips
        entry = PendingVideo(item, {name: len(clips) for name, clips in streams.items()})
        if self.kinds.crops is not None:
            crops = normalise(item.actor.crops.images, self.actors.crop_normalisation)
            entry.crop_features = self.actors.crop_encoder.encode(crops.to(self.encoder.device))
        self.pending[item.id] = entry
        for name, clips in streams.items():
            self.queue.push((item.id, name), clips.to(self.encoder.device, non_blocking=True))
        while len(self.queue) >= batch_size:
            self.run_batch(batch_size)

    def flush(self) -> None:
        if len(self.queue):
            self.run_batch(len(self.queue))

    def run_batch(self, count: int) -> None:
        taken = self.queue.take(count)
        started = time.perf_counter()
        output = self.encoder(torch.cat([clips for _, clips in taken]), with_logits=self.show_predictions)
        output.features = {kind: value.float().cpu() for kind, value in output.features.items()}  # syncs
        self.summary.encode_seconds += time.perf_counter() - started
        offset = 0
        for (video_id, stream), clips in taken:
            part = slice(offset, offset + len(clips))
            offset += len(clips)
            entry = self.pending[video_id]
            kinds = list(output.features) if stream == SCENE else [self.encoder.primary_kind]
            for kind in kinds:
                entry.outputs[stream][kind].append(output.features[kind][part])
            entry.received[stream] += len(clips)
            if stream == SCENE and output.logits is not None:
                entry.logits.append(output.logits[part].float().cpu())
            if entry.complete:
                self.finish(video_id)
        self.summary.clips += offset
        self.bar.set_postfix(clips_per_s=f"{self.summary.clips / (time.perf_counter() - self.started):.1f}")

    def finish(self, video_id: str) -> None:
        entry = self.pending.pop(video_id)
        if self.show_predictions:
            logits = torch.cat(entry.logits)[torch.as_tensor(entry.item.clip_inverse)]
            self.bar.write(format_prediction(video_id, logits.mean(0), self.encoder.class_names))
        self.output.finished(video_id, video_features(entry, self.kinds), entry.item.padded_frames)


@dataclass
class PreparedRun:
    """A shard opened for writing: what is left to do, the kinds to write, where results go."""

    todo: list[VideoJob]
    preset: Preset  # as run (a 2-D encoder's per-frame form)
    kinds: RunKinds
    actors: ActorOptions | None
    output: StoreOutput


@contextmanager
def prepared_run(
    jobs: Sequence[VideoJob],
    store: str | Path,
    *,
    encoder: FrozenEncoder,
    preset: Preset,
    dataset: str,
    device: str,
    num_shards: int,
    shard_index: int,
    limit: int | None,
    show_predictions: bool,
    actors: ActorOptions | None,
    progress: bool,
) -> Iterator[PreparedRun]:
    """Check the options, open this shard's writer, skip finished videos; on exit (also on Ctrl-C) write the
    failure list and the run's time into ``output.summary``. Shared by the local and the Ray engine."""
    actors = actors if actors is not None and actors.any else None
    if actors is not None:
        actors.check()
    if show_predictions and not encoder.has_classifier:
        encoder.enable_predictions()
    preset = preset.per_frame() if encoder.per_frame else preset
    encoder.with_normalisation(preset.normalisation).to(device)
    if actors is not None and actors.crop_encoder is not None:
        actors.crop_encoder.eval().to(encoder.device)
    summary = ExtractSummary(preset=preset)
    mine = shard_jobs(jobs, num_shards, shard_index)
    kinds, provenance = _run_kinds(encoder, preset, actors, mine)
    failures_path = Path(f"{store}.failures-{shard_index:05d}-of-{num_shards:05d}.jsonl")
    attrs = {kind: record.to_attrs() for kind, record in provenance.items()}
    started = time.perf_counter()
    with StoreWriter(store, attrs, dataset=dataset, shard_index=shard_index, num_shards=num_shards) as writer:
        todo = [job for job in mine if not writer.is_done(job.id)]
        summary.skipped = len(mine) - len(todo)
        todo = todo[:limit] if limit is not None else todo
        bar = tqdm(total=len(todo), unit="video", desc=f"{encoder.name} {dataset} shard {shard_index}",
                   disable=not progress)  # fmt: skip
        output = StoreOutput(writer, {job.id: job.labels for job in todo}, summary, bar)
        try:
            yield PreparedRun(todo, preset, kinds, actors, output)
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - started
            summary.failures_path = write_failures(failures_path, summary.failed)


def extract_features(
    jobs: Sequence[VideoJob],
    store: str | Path,
    *,
    encoder: FrozenEncoder,
    preset: Preset,
    dataset: str,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "cpu",
    num_shards: int = 1,
    shard_index: int = 0,
    limit: int | None = None,
    show_predictions: bool = False,
    actors: ActorOptions | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract ``encoder``'s kinds (and the athlete-centred ones of ``actors``) for this shard's jobs into ``store``.

    ``jobs`` is the full list; this call takes its shard, skips finished videos and, with ``limit``, the first
    ``limit`` of the rest. The encoder runs with ``preset``'s normalisation (a 2-D encoder on its per-frame form);
    ``show_predictions`` prints each video's top-5 classes (``--show-pred``).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    with prepared_run(
        jobs, store, encoder=encoder, preset=preset, dataset=dataset, device=device, num_shards=num_shards,
        shard_index=shard_index, limit=limit, show_predictions=show_predictions, actors=actors,
        progress=progress,
    ) as run:  # fmt: skip
        loader = DataLoader(
            ClipSource(run.todo, run.preset, run.actors, track_device=device),
            batch_size=None,
            num_workers=workers,
            pin_memory=encoder.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
        )
        extraction = Extraction(run.output, encoder, run.kinds, run.actors, show_predictions)
        for item in loader:
            extraction.add(item, batch_size)
        extraction.flush()
    return run.output.summary


def _run_kinds(encoder: FrozenEncoder, preset: Preset, actors: ActorOptions | None, jobs: list[VideoJob]):
    """The kinds this run writes and their provenance records."""
    provenance = encoder.provenance(preset)
    kinds = RunKinds(scene=encoder.outputs(preset))
    if actors is not None:
        wants_size = actors.store_boxes or actors.crop_encoder is not None
        frame_size = common_frame_size(job.path for job in jobs) if wants_size else None
        primary = encoder.primary_kind
        provenance |= actors.provenance(primary, provenance[primary], frame_size)
        kinds = RunKinds(
            scene=kinds.scene,
            actor=f"{primary}_actor" if actors.actor_clips else None,
            boxes=actors.store_boxes,
            crops=actors.crop_kind,
        )
    return kinds, provenance


def common_frame_size(paths) -> tuple[int, int] | None:
    """(width, height) shared by all readable source videos, None when they differ (unreadable ones fail later)."""
    sizes = set()
    for path in dict.fromkeys(paths):
        try:
            info = probe(path)
        except Exception:  # noqa: BLE001 - reported as that video's failure during extraction
            continue
        sizes.add((info.width, info.height))
        if len(sizes) > 1:
            return None
    return sizes.pop() if sizes else None


def format_prediction(video_id: str, logits: torch.Tensor, class_names: Sequence[str], k: int = 5) -> str:
    """``<video> top-1: <label> (<p>) | top-5: a (p), b (p), ...`` from clip-averaged logits."""
    probabilities = logits.float().softmax(-1)
    values, indices = probabilities.topk(k)
    top = [f"{class_names[i]} ({v:.3f})" for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
    return f"{video_id} top-1: {top[0]} | top-5: {', '.join(top)}"
