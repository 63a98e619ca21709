"""The sharded HDF5 feature store: the contract between stage one and stage two (layout in ``schema.py``)."""

from aqa_pipeline.store.index import rebuild_index
from aqa_pipeline.store.reader import FeatureSet, FeatureStore
from aqa_pipeline.store.schema import Feature, StoreError
from aqa_pipeline.store.writer import StoreWriter

__all__ = ["Feature", "FeatureSet", "FeatureStore", "StoreError", "StoreWriter", "rebuild_index"]
