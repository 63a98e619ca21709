"""aqa-pipeline: Action Quality Assessment from video.

Stage one (``aqa-extract``) turns videos into a sharded HDF5 feature store; stage two (``aqa-fit``) trains
scoring heads on the cached features and explains their scores.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from aqa_pipeline import score`` without importing torch for every ``aqa_pipeline`` import."""
    if name == "score":
        from aqa_pipeline.scoring import score

        return score
    raise AttributeError(f"module 'aqa_pipeline' has no attribute {name!r}")
