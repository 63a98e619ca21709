"""What drove a score, in the score's own units: a head's explanation arrays → clip contributions in points.

An analyst reads "the jump at 1:12 added 4.1 points", not "clip 56 had weight 0.031 in normalised units". Where the
head's arithmetic allows it the contributions are exact, so ``baseline + Σ contributions`` is the predicted score:

- weight-score decoder: ŷ = Σ_q w_q s_q and each slot's weight is spread over clips by its cross-attention, so clip
  t contributes w_t · s_t (``weights`` × ``clip_scores``), mapped to points by the run's label transform.
- GDLT: ŷ = Σ_g r_g v_g with fixed grade values v_g; each grade's share r_g v_g is spread over clips by that grade's
  attention row, and the grades are listed with their values in points.
- heads with attention over clips (TPT's parts, ACTION-NET): the score above the baseline is shared out by mean
  attention. This is an attribution, not the head's arithmetic, and the caption says so.

Other heads' arrays are kept as raw series (drawn, not converted). The baseline is the label transform's offset
(the lowest training score under ``minmax``): what the score would be if no clip contributed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Moment:
    """One clip: where it is in the video and what it added to the score (points; None for raw series)."""

    index: int
    start_s: float | None
    end_s: float | None
    points: float


@dataclass(frozen=True)
class Grade:
    """A GDLT grade: its fixed value in points and how strongly the video responded to it (shares sum to 1)."""

    value: float
    response: float


@dataclass
class ScoreView:
    """A video's score as the report draws it; ``exact`` says whether baseline + Σ points is the head's sum."""

    prediction: float
    baseline: float
    moments: list[Moment]
    exact: bool
    caption: str
    grades: list[Grade] = field(default_factory=list)
    series: dict[str, np.ndarray] = field(default_factory=dict)

    def top(self, count: int) -> list[Moment]:
        """The moments that moved the score most (largest |points|), in time order."""
        ranked = sorted(self.moments, key=lambda m: -abs(m.points))[:count]
        return sorted(ranked, key=lambda m: m.index)


@dataclass(frozen=True)
class ClipTimes:
    """Where clips are in the video: their stored start times, else an even step, else unknown."""

    starts_s: np.ndarray | None = None
    seconds_per_clip: float | None = None

    def boundaries(self, count: int) -> list[float | None]:
        """count + 1 boundaries: each clip ends where the next begins (the last lasts as long as the one before)."""
        if self.starts_s is not None and len(self.starts_s) == count and count:
            starts = [float(s) for s in self.starts_s]
            step = starts[-1] - starts[-2] if count > 1 else (self.seconds_per_clip or 1.0)
            return [*starts, starts[-1] + step]
        if self.seconds_per_clip:
            return [i * self.seconds_per_clip for i in range(count + 1)]
        return [None] * (count + 1)

    def moments(self, points: np.ndarray) -> list[Moment]:
        edges = self.boundaries(len(points))
        return [Moment(i, edges[i], edges[i + 1], float(p)) for i, p in enumerate(points)]


def score_view(
    head: str,
    arrays: dict[str, np.ndarray],
    prediction: float,
    scale: float = 1.0,
    offset: float = 0.0,
    times: ClipTimes = ClipTimes(),
) -> ScoreView:
    """``arrays`` of one video (as the head saved them) as contributions in points; ``scale`` and ``offset`` take
    the head's working units to points (``LabelTransform.to_points``)."""
    if "weights" in arrays and "clip_scores" in arrays:
        return _decoder_view(arrays, prediction, scale, offset, times)
    if "grades" in arrays and np.ndim(arrays.get("attention")) == 2:
        return _grade_view(arrays, prediction, scale, offset, times)
    attention = arrays.get("attention")
    if attention is not None and np.ndim(attention) in (1, 2) and np.size(attention):
        return _attention_view(head, np.asarray(attention, dtype=np.float64), prediction, offset, times)
    series = {k: np.asarray(v) for k, v in arrays.items() if np.ndim(v) == 1 and np.size(v)}
    caption = f"the {head} head gives no per-clip explanation"
    return ScoreView(prediction, offset, [], False, caption, series=series)


def _decoder_view(arrays, prediction: float, scale: float, offset: float, times: ClipTimes) -> ScoreView:
    points = np.asarray(arrays["weights"]) * np.asarray(arrays["clip_scores"]) * scale
    caption = "weight × clip score of the decoder, in points (exact: baseline + Σ = score)"
    return ScoreView(prediction, offset, times.moments(points), True, caption)


def _grade_view(arrays, prediction: float, scale: float, offset: float, times: ClipTimes) -> ScoreView:
    responses, attention = np.asarray(arrays["grades"]), np.asarray(arrays["attention"])
    values = np.linspace(0.0, 1.0, len(responses))  # GDLT's fixed grade values, in working units
    points = (responses * values * scale) @ attention
    grades = [Grade(float(v * scale + offset), float(r)) for v, r in zip(values, responses, strict=True)]
    caption = "each grade's share of the score spread over clips by its attention, in points (exact)"
    baseline = offset * float(responses.sum())
    return ScoreView(prediction, baseline, times.moments(points), True, caption, grades=grades)


def _attention_view(
    head: str, attention: np.ndarray, prediction: float, offset: float, times: ClipTimes
) -> ScoreView:
    share = attention.mean(axis=0) if attention.ndim == 2 else attention
    share = share / share.sum() if share.sum() > 0 else share
    caption = f"score above the baseline shared out by the {head} head's mean attention (an attribution)"
    return ScoreView(prediction, offset, times.moments(share * (prediction - offset)), False, caption)
