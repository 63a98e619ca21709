"""From store labels to the working units heads learn, and back (heads-reference §1.2).

Heads see ``y`` in working units and never raw scores. The transform is fitted on the training videos only:

- ``minmax`` (default): (score - min_train) / (max_train - min_train), so bounded heads (sigmoid outputs, GDLT's
  grade values in [0, 1]) fit any dataset; Spearman is unaffected.
- ``divide:K``: the papers' fixed divisors (RG /25, Fis-V /43, LOGO /100); ``paper`` picks the dataset's one.
- ``none``.

The difficulty-degree protocol (``use_dd``, MTL-AQA / FineDiving "w/ DD") learns score / DD and multiplies
predictions by DD; the normalisation then applies to score / DD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PAPER_DIVISORS = {"rhythmic-gymnastics": 25.0, "fis-v": 43.0, "logo": 100.0}


@dataclass
class LabelTransform:
    mode: str = "minmax"
    use_dd: bool = False
    offset: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(
        cls, scores: np.ndarray, difficulty: np.ndarray | None, *, mode: str, use_dd: bool, dataset: str = ""
    ) -> LabelTransform:
        raw = _raw(scores, difficulty, use_dd)
        if mode == "paper":
            if dataset not in PAPER_DIVISORS:
                raise ValueError(
                    f"no paper divisor known for dataset {dataset!r}; known: {sorted(PAPER_DIVISORS)}"
                )
            mode = f"divide:{PAPER_DIVISORS[dataset]}"
        if mode == "minmax":
            low, high = float(np.min(raw)), float(np.max(raw))
            return cls("minmax", use_dd, low, (high - low) or 1.0)
        if mode.startswith("divide:"):
            return cls(mode, use_dd, 0.0, float(mode.split(":", 1)[1]))
        if mode == "none":
            return cls("none", use_dd, 0.0, 1.0)
        raise ValueError(f"unknown label normalisation {mode!r}: use minmax, paper, divide:K or none")

    def forward(self, scores: np.ndarray, difficulty: np.ndarray | None) -> np.ndarray:
        return ((_raw(scores, difficulty, self.use_dd) - self.offset) / self.scale).astype(np.float32)

    def inverse(self, y: np.ndarray, difficulty: np.ndarray | None) -> np.ndarray:
        raw = np.asarray(y, dtype=np.float64) * self.scale + self.offset
        return raw * difficulty if self.use_dd else raw

    def to_points(self, difficulty: float | None = None) -> tuple[float, float]:
        """(scale, offset) that take one video's working units to points: score = y · scale + offset."""
        factor = float(difficulty) if self.use_dd and difficulty is not None else 1.0
        return self.scale * factor, self.offset * factor

    def to_dict(self) -> dict:
        return asdict(self)


def _raw(scores, difficulty, use_dd: bool) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if not use_dd:
        return scores
    if difficulty is None or np.isnan(difficulty).any():
        raise ValueError(
            "use_dd needs a difficulty degree for every video; this data has none (or some missing)"
        )
    return scores / difficulty
