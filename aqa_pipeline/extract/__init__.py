"""Stage one as a package whose files follow the data: ``jobs`` → ``source`` (worker-side decoding, typed items)
→ ``batching`` (clips packed across videos) → the encoder (:mod:`aqa_pipeline.encoders`) → ``writer`` (per-kind
features into the store), driven by ``run``."""

from aqa_pipeline.extract.jobs import VideoJob, find_video, jobs_from_manifest, jobs_from_paths, shard_jobs
from aqa_pipeline.extract.run import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    ExtractSummary,
    common_frame_size,
    extract_features,
    format_prediction,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WORKERS",
    "ExtractSummary",
    "VideoJob",
    "common_frame_size",
    "extract_features",
    "find_video",
    "format_prediction",
    "jobs_from_manifest",
    "jobs_from_paths",
    "shard_jobs",
]
