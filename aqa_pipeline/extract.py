"""The batched extraction loop: videos → decoded clips (worker processes) → I3D batches → one store shard.

Why it is shaped this way (the pain points of per-video, single-process extractors):

* DataLoader worker processes decode and resize while the model runs, and hand over uint8 clips (4× less to move
  than float); the float conversion and normalisation happen on the model's device.
* Clips of different videos are packed into batches of ``batch_size``, so short videos do not leave the model
  half-idle; on a GPU, clips are pinned and copied asynchronously and the model runs under autocast.
* Every sample of a source video (MTL-AQA dives inside one event video) is decoded in one pass of that video.
* The store writer makes it resumable: finished videos are skipped, a failing video is recorded (in the shard
  and in ``<store>.failures-<shard>.jsonl``) while the rest continue, and Ctrl-C keeps everything finished.
* Sharding is deterministic (sample ``index % num_shards``), so shards can run as independent jobs.
* The athlete-centred kinds (tracked ``boxes``, ``*_crops``, ``i3d_actor``; :mod:`aqa_pipeline.actors`) are
  prepared in the same workers and written by the same writer, so a video is done only when all its kinds are.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from aqa_pipeline.actors import CROP_KINDS, ActorOptions, actor_inputs
from aqa_pipeline.detect.crops import normalise
from aqa_pipeline.encoders.i3d import FEATURE_DIM, InceptionI3d, endpoint_shape
from aqa_pipeline.store import Feature, StoreError, StoreWriter
from aqa_pipeline.video.decode import open_video, probe, read_windows
from aqa_pipeline.video.presets import Preset

# aqa-extract's defaults per device type: on CPU the I3D, not decoding, is the bottleneck, so it gets every core
# beside one decoding worker, and batches beyond 4 clips only cost cache and memory
DEFAULT_BATCH_SIZE = {"cpu": 4, "cuda": 64}
DEFAULT_WORKERS = {"cpu": 1, "cuda": 4}

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class VideoJob:
    """One sample to extract: a frame range (or the whole file) of a source video, and its labels."""

    id: str
    path: str
    start_frame: int | None = None
    end_frame: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    padded: dict[str, int] = field(default_factory=dict)  # video id → padded frames, only where > 0
    clips: int = 0
    seconds: float = 0.0
    failures_path: Path | None = None

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------------------------------------- job lists


def find_video(video_root: str | Path, name: str) -> Path:
    """The file for manifest video ``name`` under ``video_root``: ``name`` itself if it has a video extension,
    else the first ``name.<ext>`` that exists (``name.mp4`` if none does: extraction then reports it missing)."""
    root = Path(video_root)
    if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
        return root / name
    for extension in VIDEO_EXTENSIONS:
        candidate = root / f"{name}{extension}"
        if candidate.is_file():
            return candidate
    return root / f"{name}.mp4"


def jobs_from_manifest(manifest, video_root: str | Path) -> list[VideoJob]:
    """One job per manifest row; a missing file is not an error here but a recorded failure at extraction."""
    return [
        VideoJob(
            id=row.id,
            path=str(find_video(video_root, row.video)),
            start_frame=row.start_frame,
            end_frame=row.end_frame,
            labels=manifest.labels(row),
        )
        for row in manifest.rows
    ]


def jobs_from_paths(paths: Sequence[str | Path]) -> list[VideoJob]:
    """Users' own videos: id = file stem (must be unique), no labels, split ``unlabelled``."""
    jobs, seen = [], {}
    for path in map(Path, paths):
        if path.stem in seen:
            raise ValueError(
                f"{path} and {seen[path.stem]} would both get video id {path.stem!r}; rename one"
            )
        seen[path.stem] = path
        jobs.append(VideoJob(id=path.stem, path=str(path), labels={"split": UNLABELLED}))
    return jobs


def shard_jobs(jobs: Sequence[VideoJob], num_shards: int, shard_index: int) -> list[VideoJob]:
    """This shard's jobs: position ``% num_shards == shard_index`` in the given (manifest) order."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index {shard_index} must be in 0..{num_shards - 1}")
    return [job for i, job in enumerate(jobs) if i % num_shards == shard_index]


# -------------------------------------------------------------------------------------- worker-side decoding


class ClipSource(IterableDataset):
    """Yields one item per job: uint8 clips (N, L, H, W, 3) with their frame times, or the error that stopped it.

    Jobs are grouped by source file; each worker process takes every ``num_workers``-th source and decodes it
    once for all its jobs. Errors become items (a raising worker would end the whole DataLoader). With
    ``actors``, each item also carries the athlete-centred inputs of :func:`aqa_pipeline.actors.actor_inputs`
    (tracked boxes, person crops, actor clips); a failure there fails that job only.
    """

    def __init__(self, jobs: Sequence[VideoJob], preset: Preset, actors: ActorOptions | None = None) -> None:
        self.preset = preset
        self.actors = actors if actors is not None and actors.any else None
        groups: dict[str, list[VideoJob]] = defaultdict(list)
        for job in jobs:
            groups[job.path].append(job)
        self.groups = list(groups.items())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for path, jobs in self.groups[worker::workers]:
            yield from self._decode_source(path, jobs)

    def _decode_source(self, path: str, jobs: list[VideoJob]) -> Iterator[dict[str, Any]]:
        try:
            reader = open_video(path)
            total, fps = len(reader), float(reader.get_avg_fps())
        except Exception as error:
            for job in jobs:
                yield _failure(job, str(error))
            return
        planned = []
        for job in jobs:
            try:
                first, stop = self.preset.window(job.start_frame, job.end_frame, total)
                if stop <= first:
                    raise ValueError(
                        f"{path}: frames [{job.start_frame}, {job.end_frame}] lie outside its {total} frames"
                    )
                plan = self.preset.plan(stop - first, fps)
                planned.append((job, first, stop, plan))
            except Exception as error:
                yield _failure(job, str(error))
        windows = [first + plan.frame_indices for _, first, _, plan in planned]
        remaining = set(range(len(planned)))
        try:
            frame_hw = tuple(reader[0].shape[:2]) if self.actors is not None and planned else None
            for position, frames in read_windows(path, windows, self.preset.transform_frame, reader):
                item = _clip_item(*planned[position], frames, fps)
                remaining.discard(position)
                if self.actors is not None:
                    item = self._with_actors(item, path, reader, planned[position], fps, frame_hw)
                yield item
        except Exception as error:
            for position in sorted(remaining):
                yield _failure(planned[position][0], f"decode error: {error}")

    def _with_actors(self, item, path, reader, planned, fps, frame_hw) -> dict[str, Any]:
        job, first, stop, plan = planned
        try:
            item.update(
                actor_inputs(
                    self.actors,
                    job.id,
                    path,
                    reader,
                    first,
                    stop,
                    plan.frame_indices,
                    plan.clip_frames()[item["unique_clips"]],
                    fps,
                    frame_hw,
                    self.preset.output_hw[0],
                )
            )
        except Exception as error:  # no person to track, a box outside the frame, ...
            return _failure(job, f"{path}: {error}")
        return item


def _clip_item(job: VideoJob, first: int, stop: int, plan, frames: np.ndarray, fps: float) -> dict[str, Any]:
    """One job's clips; clips made of the same frames (padding repeats the last one) are encoded only once."""
    starts = np.asarray(plan.clip_starts)
    _, unique, inverse = np.unique(plan.clip_frames(), axis=0, return_index=True, return_inverse=True)
    clips = frames[starts[unique][:, None] + np.arange(plan.clip_len)]
    return {
        "id": job.id,
        "clips": torch.from_numpy(np.ascontiguousarray(clips)),
        # lists: the DataLoader would turn arrays into tensors
        "clip_inverse": inverse.reshape(-1).tolist(),
        "unique_clips": unique.tolist(),
        "times": first + plan.frame_indices[starts],
        "padded_frames": plan.padded_frames,
        "window": (first, stop),
        "fps": fps,
        "error": None,
    }


def _failure(job: VideoJob, reason: str) -> dict[str, Any]:
    return {"id": job.id, "error": reason}


# ---------------------------------------------------------------------------------------- model-side packing


@dataclass
class _Pending:
    """A video whose clips are (partly) in flight: outputs arrive batch by batch, in clip order, per stream
    (``scene``: the preset's clips; ``actor``: the same clips cut around the athlete)."""

    item: dict[str, Any]
    expected: dict[str, int]  # stream → number of clips
    features: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))
    maps: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    crop_features: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return all(sum(len(f) for f in self.features[s]) == n for s, n in self.expected.items())


class _ClipQueue:
    """Clips waiting for the model, keyed (video id, stream), in arrival order; ``take`` cuts a batch across
    video and stream boundaries."""

    def __init__(self) -> None:
        self._parts: deque[tuple[tuple[str, str], torch.Tensor]] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, key: tuple[str, str], clips: torch.Tensor) -> None:
        self._parts.append((key, clips))
        self._count += len(clips)

    def take(self, count: int) -> list[tuple[tuple[str, str], torch.Tensor]]:
        taken = []
        while count > 0 and self._parts:
            key, clips = self._parts.popleft()
            if len(clips) > count:
                self._parts.appendleft((key, clips[count:]))
                clips = clips[:count]
            taken.append((key, clips))
            count -= len(clips)
            self._count -= len(clips)
        return taken


class _Runner:
    """Normalises uint8 clips on the device and runs the model with the right precision and memory format.

    channels-last 3-D is faster for batched 3-D convolutions (on one CPU core at batch 16, ~1.5× less CPU time
    per clip than contiguous, measured with process time). Autocast (bf16 where supported, else fp16) on GPU
    only; fp32 on CPU.
    """

    def __init__(self, model: InceptionI3d, preset: Preset, device: torch.device, with_logits: bool) -> None:
        self.model = model.to(memory_format=torch.channels_last_3d)
        self.with_logits = with_logits
        mean, std = preset.mean_std
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1, 1) * 255
        self.autocast_dtype = None
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor):
        # (B, L, H, W, 3) uint8 is already the channels-last-3d layout of (B, 3, L, H, W): the float copy keeps
        # it, and normalising in place avoids two more full-size float tensors.
        x = clips.permute(0, 4, 1, 2, 3).float().sub_(self.mean).div_(self.std)
        x = x.contiguous(
            memory_format=torch.channels_last_3d
        )  # a no-op unless a caller passes another layout
        if self.autocast_dtype is None:
            return self.model(x, with_logits=self.with_logits)
        with torch.autocast("cuda", dtype=self.autocast_dtype):
            return self.model(x, with_logits=self.with_logits)


def extract_features(
    jobs: Sequence[VideoJob],
    store: str | Path,
    *,
    model: InceptionI3d,
    preset: Preset,
    dataset: str,
    weights_sha256: str | None,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "cpu",
    num_shards: int = 1,
    shard_index: int = 0,
    limit: int | None = None,
    class_names: Sequence[str] | None = None,
    actors: ActorOptions | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract ``i3d`` (and ``i3d_maps`` when ``model.map_endpoint`` is set) for this shard's jobs into ``store``.

    ``jobs`` is the full list; this call takes its shard, skips finished videos and, with ``limit``, the first
    ``limit`` of the rest. ``class_names`` turns on the per-video Kinetics top-5 print (``--show-pred``).
    ``actors`` adds the athlete-centred kinds (``boxes``, ``*_crops``, ``i3d_actor``; see
    :mod:`aqa_pipeline.actors`); every kind of the run goes into the same shard, written per video.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    actors = actors if actors is not None and actors.any else None
    if actors is not None:
        actors.check()
    device_ = torch.device(device)
    model = model.eval().to(device_)
    runner = _Runner(model, preset, device_, with_logits=class_names is not None)
    crop_encoder = actors.crop_encoder.eval().to(device_) if actors and actors.crop_encoder else None
    summary = ExtractSummary()
    failures_path = Path(f"{store}.failures-{shard_index:05d}-of-{num_shards:05d}.jsonl")
    started = time.perf_counter()
    mine = shard_jobs(jobs, num_shards, shard_index)
    kinds = _provenance(model, preset, weights_sha256)
    if actors is not None:
        frame_size = (
            common_frame_size(job.path for job in mine) if actors.store_boxes or crop_encoder else None
        )
        kinds.update(actors.provenance(kinds["i3d"], frame_size))
    with StoreWriter(store, kinds, dataset=dataset, shard_index=shard_index, num_shards=num_shards) as writer:
        todo = [job for job in mine if not writer.is_done(job.id)]
        summary.skipped = len(mine) - len(todo)
        todo = todo[:limit] if limit is not None else todo
        labels = {job.id: job.labels for job in todo}
        loader = DataLoader(
            ClipSource(todo, preset, actors),
            batch_size=None,
            num_workers=workers,
            pin_memory=device_.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
        )
        bar = tqdm(
            total=len(todo), unit="video", desc=f"extract {dataset} shard {shard_index}", disable=not progress
        )
        pending: dict[str, _Pending] = {}
        queue = _ClipQueue()

        def finish(video_id: str) -> None:
            entry = pending.pop(video_id)
            try:
                writer.write(video_id, _features(entry, set(kinds)), labels=labels[video_id])
            except StoreError as error:  # e.g. NaN features: this video fails, the run goes on
                fail(video_id, str(error))
                return
            summary.done.append(video_id)
            if entry.item["padded_frames"]:
                summary.padded[video_id] = entry.item["padded_frames"]
            if class_names is not None:
                logits = torch.cat(entry.logits)[torch.as_tensor(entry.item["clip_inverse"])]
                bar.write(format_prediction(video_id, logits.mean(0), class_names))
            bar.update(1)

        def fail(video_id: str, reason: str) -> None:
            writer.record_failure(video_id, reason)
            summary.failed.append({"id": video_id, "reason": reason})
            bar.update(1)

        def run(count: int) -> None:
            taken = queue.take(count)
            output = runner(torch.cat([clips for _, clips in taken]))
            offset = 0
            for (video_id, stream), clips in taken:
                part = slice(offset, offset + len(clips))
                offset += len(clips)
                entry = pending[video_id]
                entry.features[stream].append(output.features[part].float().cpu())
                if stream == "scene" and output.maps is not None:
                    entry.maps.append(output.maps[part].to(torch.float16).cpu())
                if stream == "scene" and output.logits is not None:
                    entry.logits.append(output.logits[part].float().cpu())
                if entry.complete:
                    finish(video_id)
            summary.clips += offset
            bar.set_postfix(clips_per_s=f"{summary.clips / (time.perf_counter() - started):.1f}")

        try:
            for item in loader:
                if item["error"] is not None:
                    fail(item["id"], item["error"])
                    continue
                streams = {"scene": item.pop("clips")}
                if "actor_clips" in item:
                    streams["actor"] = item.pop("actor_clips")
                entry = _Pending(item, {name: len(clips) for name, clips in streams.items()})
                if crop_encoder is not None:
                    crops = normalise(item.pop("crops"), actors.crop_normalisation)
                    entry.crop_features = crop_encoder.encode(crops.to(device_))
                pending[item["id"]] = entry
                for name, clips in streams.items():
                    queue.push((item["id"], name), clips.to(device_, non_blocking=True))
                while len(queue) >= batch_size:
                    run(batch_size)
            if len(queue):
                run(len(queue))
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - started
            summary.failures_path = _write_failures(failures_path, summary.failed)
    return summary


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


def _features(entry: _Pending, kinds: set[str]) -> dict[str, Feature]:
    item = entry.item
    attrs = {
        "padded_frames": int(item["padded_frames"]),
        "window": list(item["window"]),
        "source_fps": item["fps"],
    }
    times = np.asarray(item["times"], dtype=np.int64)
    inverse = np.asarray(item["clip_inverse"], dtype=np.int64)

    def per_clip(parts: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(parts).numpy()[inverse]

    features = {"i3d": Feature(per_clip(entry.features["scene"]).astype(np.float32), times, attrs)}
    if "i3d_maps" in kinds:
        features["i3d_maps"] = Feature(per_clip(entry.maps), times, attrs)
    if "i3d_actor" in kinds:
        features["i3d_actor"] = Feature(per_clip(entry.features["actor"]).astype(np.float32), times, attrs)
    frame_size = [int(v) for v in item.get("frame_size", ())]
    if "boxes" in kinds:
        features["boxes"] = Feature(
            np.asarray(item["boxes"], dtype=np.float32),
            np.asarray(item["box_times"], dtype=np.int64),
            {**attrs, "frame_size": frame_size},
        )
    if entry.crop_features is not None:
        kind = next(k for k in kinds if k in CROP_KINDS.values())
        crop_attrs = {
            **attrs,
            "frame_size": frame_size,
            "crop_boxes": np.asarray(item["crop_boxes"], dtype=np.float32),
            "box_scores": np.asarray(item["crop_box_scores"], dtype=np.float32),
        }
        if item.get("crop_box_sources") is not None:
            crop_attrs["box_sources"] = np.asarray(item["crop_box_sources"], dtype=np.int8)
        features[kind] = Feature(
            entry.crop_features.astype(np.float32), np.asarray(item["crop_times"], dtype=np.int64), crop_attrs
        )
    return features


def _provenance(model: InceptionI3d, preset: Preset, weights_sha256: str | None) -> dict[str, dict[str, Any]]:
    common = {
        "encoder": "i3d",
        "preset": preset.name,
        "weights_sha256": weights_sha256 or "unverified",
        "transform": json.dumps(preset.describe(), sort_keys=True),
        "clip_len": preset.clip_len,
        "fps": preset.target_fps or "native",
        "normalisation": preset.normalisation,
        "clip_starts": list(preset.clip_starts) if preset.clip_starts else f"tiled every {preset.clip_len}",
        "times": "source-video frame index of each clip's first frame",
        "padding": f"{preset.pad} (per-video count in the feature attribute padded_frames)",
    }
    kinds = {
        "i3d": {**common, "dim": FEATURE_DIM, "layer": "Mixed_5c, mean over T, H, W", "dtype": "float32"}
    }
    if model.map_endpoint is not None:
        shape = endpoint_shape(model.map_endpoint, preset.clip_len, *preset.output_hw)
        kinds["i3d_maps"] = {
            **common,
            "dim": list(shape),
            "layer": model.map_endpoint,
            "dtype": "float16",
            "layout": "(clips, C, T, H, W): one I3D map per clip, clip k's T axis covers its clip_len frames",
        }
        if preset.resize_mode == "fixed" and preset.output_hw == preset.crop_hw:
            # the spatial recipe as (w, h), for the TSA head's crop-aware tube geometry
            kinds["i3d_maps"]["resize"] = list(preset.resize_to)
            kinds["i3d_maps"]["crop"] = [preset.crop_hw[1], preset.crop_hw[0]]
    return kinds


def _write_failures(path: Path, failures: list[dict[str, str]]) -> Path | None:
    """This run's failures, one JSON object per line; no file when nothing failed."""
    if not failures:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(f) + "\n" for f in failures))
    return path


def format_prediction(video_id: str, logits: torch.Tensor, class_names: Sequence[str], k: int = 5) -> str:
    """``<video> top-1: <label> (<p>) | top-5: a (p), b (p), ...`` from clip-averaged logits."""
    probabilities = logits.float().softmax(-1)
    values, indices = probabilities.topk(k)
    top = [f"{class_names[i]} ({v:.3f})" for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
    return f"{video_id} top-1: {top[0]} | top-5: {', '.join(top)}"
