"""``model.pt``: a run's saved model as plain tensors and plain data, loaded with ``torch.load(weights_only=True)``.

Run directories get shared, and a pickle executes whatever it names when loaded. So a checkpoint holds only what
the weights-only unpickler admits: tensors, numbers, strings, None and lists / tuples / dicts of them. numpy arrays
travel as tensors (tagged, so they come back as arrays of their dtype), the training videos some heads keep
(:class:`SequenceData`) as a tagged dict of those; nothing callable is saved (the label transform is rebuilt from
its plain parameters and re-attached on load).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa_pipeline.train.data import SequenceData

_ARRAY, _SEQUENCES = "__ndarray__", "__sequence_data__"
_SEQUENCE_FIELDS = ("ids", "x", "y", "extra", "difficulty", "groups", "judges")


class CheckpointError(ValueError):
    """``model.pt`` is not a checkpoint of ours (or holds something a weights-only load refuses)."""


def to_plain(value: Any) -> Any:
    """``value`` as data the weights-only unpickler admits; refuses anything else by name."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OUS":
            return {"__strings__": [str(v) for v in value.tolist()]}
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, SequenceData):
        return {_SEQUENCES: {name: to_plain(getattr(value, name)) for name in _SEQUENCE_FIELDS}}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"cannot save {type(value).__name__} in a weights-only checkpoint")


def from_plain(value: Any, to_working: Callable | None = None) -> Any:
    """The inverse of :func:`to_plain`; ``to_working`` is re-attached to saved training videos."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return value[_ARRAY].numpy()
        if set(value) == {"__strings__"}:
            return np.asarray(value["__strings__"])
        if set(value) == {_SEQUENCES}:
            fields = {k: from_plain(v) for k, v in value[_SEQUENCES].items()}
            return SequenceData(**fields, to_working=to_working)
        return {k: from_plain(v, to_working) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(v, to_working) for v in value)
    return value


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    torch.save(to_plain(payload), path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The plain payload of ``path`` (still tagged: pass parts through :func:`from_plain`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # the weights-only unpickler refuses a crafted or foreign file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a safe aqa-pipeline checkpoint ({first})") from None
