"""aqa-pipeline: Action Quality Assessment from video.

Stage one (``aqa-extract``) turns videos into a sharded HDF5 feature store; stage two (``aqa-fit``) trains
scoring heads on the cached features and explains their scores.
"""

__version__ = "0.1.0"
