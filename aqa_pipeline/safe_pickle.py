"""Loading the upstream datasets' annotation pickles without running arbitrary code.

``pickle.load`` will call any importable function a file names. The official MTL-AQA and FineDiving annotation
files hold only builtin containers, numbers, strings and numpy arrays/scalars, so only what rebuilds those is
admitted; any other global is refused with the file and the name.
"""

from __future__ import annotations

import pickle
from pathlib import Path

# (module, name) pairs the official annotation files reference (numpy 1 and numpy 2 module paths).
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class UnsafePickleError(ValueError):
    """An annotation pickle references something beyond plain data; it is not loaded."""


class _AnnotationUnpickler(pickle.Unpickler):
    def __init__(self, handle, path: Path) -> None:
        super().__init__(handle)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.path}: refers to {module}.{name}, which annotation files never hold; refusing to load it"
            )
        return super().find_class(module, name)


def load_annotation_pickle(path: Path) -> object:
    with open(path, "rb") as handle:
        return _AnnotationUnpickler(handle, path).load()
