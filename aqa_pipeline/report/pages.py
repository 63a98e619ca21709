"""The report as HTML: one page per video (score, timeline in points, keyframes, the video itself) and an index.

Rendered from jinja2 templates (``report/templates``) with autoescaping, so ids and paths are escaped everywhere.
A page's bars and thumbnails carry their moment's start time (``data-t``); a click seeks the page's ``<video>``
there. The index holds the run's metrics and scatter, and a table that sorts and filters in the browser, its
thumbnails loaded lazily.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from aqa_pipeline.report.points import Moment, ScoreView
from aqa_pipeline.report.thumbnails import write_thumbnails

KEYFRAMES = 3
CHART_WIDTH, CHART_HEIGHT = 900, 180


@dataclass
class ExplainedVideo:
    """One scored video: what the page shows. ``video`` is the file to embed and take keyframes from."""

    id: str
    prediction: float
    view: ScoreView
    truth: float | None = None
    video: Path | None = None

    @property
    def error(self) -> float | None:
        if self.truth is None or not math.isfinite(self.truth):
            return None
        return self.prediction - self.truth


@dataclass
class ReportHeader:
    """What the index says about the run: where it came from, its metrics and its scatter plot."""

    title: str
    run_dir: Path
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    scatter: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Bar:
    """One clip's bar in the timeline chart (SVG user units)."""

    x: float
    y: float
    width: float
    height: float
    positive: bool
    moment: Moment


def safe_name(video_id: str) -> str:
    """A file name for a video id (ids can hold path separators, spaces or dots)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in video_id)
    return cleaned or "_"


def mmss(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def chart_bars(view: ScoreView) -> list[Bar]:
    """Signed bars around a zero line: one per clip, as wide as the clip lasts, as tall as its points."""
    if not view.moments:
        return []
    largest = max(abs(m.points) for m in view.moments) or 1.0
    half = CHART_HEIGHT / 2
    width = CHART_WIDTH / len(view.moments)
    bars = []
    for i, moment in enumerate(view.moments):
        height = abs(moment.points) / largest * (half - 4)
        y = half - height if moment.points >= 0 else half
        bars.append(Bar(i * width, y, max(width - 1, 1), height, moment.points >= 0, moment))
    return bars


def _environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("aqa_pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["mmss"] = mmss
    return environment


def write_pages(
    out: Path, header: ReportHeader, videos: list[ExplainedVideo], progress: bool = False
) -> Path:
    """``out/index.html`` and ``out/videos/<id>.html`` (keyframes in ``out/videos/frames``); returns the index."""
    from tqdm.auto import tqdm

    environment = _environment()
    pages = out / "videos"
    pages.mkdir(parents=True, exist_ok=True)
    rows = []
    for video in tqdm(videos, desc="report", unit="video", disable=not progress):
        name = safe_name(video.id)
        keyframes = _keyframes(video, pages, name)
        page = environment.get_template("video.html.j2").render(
            video=video,
            header=header,
            bars=chart_bars(video.view),
            keyframes=keyframes,
            source=_relative(video.video, pages) if video.video else None,
            chart_width=CHART_WIDTH,
            chart_height=CHART_HEIGHT,
        )
        (pages / f"{name}.html").write_text(page)
        rows.append((video, f"videos/{name}.html", keyframes[0][1] if keyframes else None))
    scatter = None
    if header.scatter is not None and header.scatter.is_file():
        shutil.copyfile(header.scatter, out / "scatter.png")
        scatter = "scatter.png"
    index = out / "index.html"
    index.write_text(
        environment.get_template("index.html.j2").render(header=header, rows=rows, scatter=scatter)
    )
    return index


def _keyframes(video: ExplainedVideo, pages: Path, name: str) -> list[tuple[Moment, str]]:
    """(moment, thumbnail path relative to the pages) for the moments that moved the score most."""
    top = [m for m in video.view.top(KEYFRAMES) if m.start_s is not None]
    if video.video is None or not top:
        return []
    middles = [(m.start_s + (m.end_s if m.end_s is not None else m.start_s)) / 2 for m in top]
    written = write_thumbnails(video.video, middles, pages / "frames", name)
    return [(m, f"frames/{p.name}") for m, p in zip(top, written, strict=True) if p is not None]


def _relative(path: Path, start: Path) -> str:
    """A URL to ``path`` from a page in ``start`` (relative, so the report folder can be moved with its videos)."""
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return path.resolve().as_uri()
