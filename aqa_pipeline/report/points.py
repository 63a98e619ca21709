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


def score_view(
    head: str,
    arrays: dict[str, np.ndarray],
    prediction: float,
    scale: float = 1.0,
    offset: float = 0.0,
    clip_starts_s: np.ndarray | None = None,
    seconds_per_clip: float | None = None,
) -> ScoreView:
    """``arrays`` of one video (as the head saved them) as contributions in points; ``scale`` and ``offset`` take
    the head's working units to points (``LabelTransform.to_points``).

    ``clip_starts_s`` gives each clip's start in seconds (from the store's frame times); otherwise
    ``seconds_per_clip`` spaces them evenly; with neither, moments have no times."""
    if "weights" in arrays and "clip_scores" in arrays:
        points = np.asarray(arrays["weights"]) * np.asarray(arrays["clip_scores"]) * scale
        caption = "weight × clip score of the decoder, in points (exact: baseline + Σ = score)"
        return _view(prediction, offset, points, True, caption, clip_starts_s, seconds_per_clip)
    if "grades" in arrays and np.ndim(arrays.get("attention")) == 2:
        responses, attention = np.asarray(arrays["grades"]), np.asarray(arrays["attention"])
        working_values = np.linspace(0.0, 1.0, len(responses))
        points = (responses * working_values * scale) @ attention
        grades = [
            Grade(float(v * scale + offset), float(r)) for v, r in zip(working_values, responses, strict=True)
        ]
        caption = "each grade's share of the score spread over clips by its attention, in points (exact)"
        view = _view(
            prediction,
            offset * float(responses.sum()),
            points,
            True,
            caption,
            clip_starts_s,
            seconds_per_clip,
        )
        view.grades = grades
        return view
    attention = arrays.get("attention")
    if attention is not None and np.ndim(attention) in (1, 2) and np.size(attention):
        share = np.asarray(attention, dtype=np.float64)
        share = share.mean(axis=0) if share.ndim == 2 else share
        share = share / share.sum() if share.sum() > 0 else share
        caption = f"score above the baseline shared out by the {head} head's mean attention (an attribution)"
        return _view(
            prediction, offset, share * (prediction - offset), False, caption, clip_starts_s, seconds_per_clip
        )
    series = {k: np.asarray(v) for k, v in arrays.items() if np.ndim(v) == 1 and np.size(v)}
    return ScoreView(
        prediction, offset, [], False, f"the {head} head gives no per-clip explanation", series=series
    )


def _view(
    prediction: float,
    baseline: float,
    points: np.ndarray,
    exact: bool,
    caption: str,
    clip_starts_s: np.ndarray | None,
    seconds_per_clip: float | None,
) -> ScoreView:
    starts = _starts(len(points), clip_starts_s, seconds_per_clip)
    moments = [
        Moment(i, starts[i], starts[i + 1] if starts[i] is not None else None, float(p))
        for i, p in enumerate(points)
    ]
    return ScoreView(prediction, baseline, moments, exact, caption)


def _starts(
    count: int, clip_starts_s: np.ndarray | None, seconds_per_clip: float | None
) -> list[float | None]:
    """count + 1 boundaries: each clip starts where it starts and ends where the next begins (the last one
    lasts as long as the one before it)."""
    if clip_starts_s is not None and len(clip_starts_s) == count and count:
        starts = [float(s) for s in clip_starts_s]
        step = starts[-1] - starts[-2] if count > 1 else (seconds_per_clip or 1.0)
        return [*starts, starts[-1] + step]
    if seconds_per_clip:
        return [i * seconds_per_clip for i in range(count + 1)]
    return [None] * (count + 1)
