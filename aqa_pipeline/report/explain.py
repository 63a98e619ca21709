"""Per-video explanation report: what each head says drove each score, as plots plus one HTML index.

Reads a run directory written by ``aqa-fit``: ``predictions.csv`` (split, fold, seed, id, truth, prediction),
``explanations/<id>.npz`` (the head's explanation arrays plus ``truth`` and ``prediction``), ``config.json`` (head,
target) and ``run.json`` (with the feature store's provenance under ``provenance``). The report does not know any head: it draws arrays by
shape, so every head's explanations render. Along the clip axis T (the longest last axis in a video's file):

- (T,)   → a timeline (clip weights, clip scores, temporal attention),
- (K, T) → a heat map (per-grade or per-head attention over clips),
- (K,)   → bars (GDLT's grade responses).

The time axis is in seconds when the provenance gives ``fps`` and the clip step (``stride`` or ``clip_len``
frames), else in clip index. The index page lists videos by absolute error, worst first, so an analyst starts
where the model is most wrong.
"""

from __future__ import annotations

import csv
import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESERVED_KEYS = ("truth", "prediction")


@dataclass
class VideoExplanation:
    """One video: its true and predicted score and the explanation arrays by name (empty when none were saved)."""

    id: str
    truth: float
    prediction: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def error(self) -> float:
        return abs(self.prediction - self.truth)

    def clip_count(self) -> int | None:
        lengths = [a.shape[-1] for a in self.arrays.values() if a.ndim in (1, 2) and a.size]
        return max(lengths) if lengths else None


def clip_seconds(provenance: dict | None) -> float | None:
    """Seconds between consecutive clip starts from a store provenance (flat, or one level down per kind)."""
    if not isinstance(provenance, dict):
        return None
    candidates = [provenance, *[v for v in provenance.values() if isinstance(v, dict)]]
    for candidate in candidates:
        fps = candidate.get("fps")
        if fps == "native":  # clips at the source's own rate: a release states it as source_fps
            fps = candidate.get("source_fps")
        step = candidate.get("stride") or candidate.get("clip_len")
        try:
            fps, step = float(fps), float(step)
        except (TypeError, ValueError):
            continue
        if fps > 0 and step > 0:
            return step / fps
    return None


def read_predictions(path: Path) -> dict[str, tuple[float, float]]:
    """id → (truth, mean prediction over the rows for that id: seeds, folds)."""
    required = {"split", "fold", "seed", "id", "truth", "prediction"}
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {sorted(required)}")
        for line, row in enumerate(reader, start=2):
            try:
                rows[row["id"]].append((float(row["truth"]), float(row["prediction"])))
            except ValueError as error:
                raise ValueError(f"{path}:{line}: bad number for video {row['id']!r}: {error}") from None
    return {vid: (pairs[0][0], float(np.mean([p for _, p in pairs]))) for vid, pairs in rows.items()}


def load_run(run_dir: str | Path) -> tuple[list[VideoExplanation], dict]:
    """Videos of a run (with explanations where saved) and its config; a clear error if the run is incomplete."""
    run_dir = Path(run_dir)
    predictions_path = run_dir / "predictions.csv"
    if not predictions_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no predictions.csv (is this an aqa-fit run directory?)")
    # config.json holds the options (head, target), run.json the inputs (store provenance).
    config: dict = {}
    for name in ("config.json", "run.json"):
        if (run_dir / name).is_file():
            config.update(json.loads((run_dir / name).read_text()))
    videos = {
        vid: VideoExplanation(vid, truth, pred)
        for vid, (truth, pred) in read_predictions(predictions_path).items()
    }
    for npz_path in sorted((run_dir / "explanations").glob("*.npz")):
        vid = npz_path.stem
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
        video = videos.setdefault(vid, VideoExplanation(vid, float("nan"), float("nan")))
        # the explained prediction is the one drawn, so it is also the one ranked
        for key in RESERVED_KEYS:
            if key in arrays:
                setattr(video, key, float(np.asarray(arrays.pop(key)).reshape(-1)[0]))
        video.arrays = arrays
    return list(videos.values()), config


def render_video(video: VideoExplanation, path: Path, seconds_per_clip: float | None) -> None:
    """One PNG: a panel per explanation array (timeline, heat map or bars), predicted vs true score in the title."""
    from matplotlib.figure import Figure

    t = video.clip_count()
    panels = [(k, a) for k, a in video.arrays.items() if a.ndim in (1, 2) and a.size]
    figure = Figure(figsize=(9, 1.0 + 1.9 * max(len(panels), 1)), layout="constrained")
    axes = figure.subplots(max(len(panels), 1), 1, squeeze=False)[:, 0]
    figure.suptitle(
        f"{video.id}: predicted {video.prediction:.3g}, true {video.truth:.3g} (error {video.error:.3g})"
    )
    if not panels:
        axes[0].text(0.5, 0.5, "no explanation arrays saved", ha="center", va="center")
        axes[0].set_axis_off()
    step = seconds_per_clip or 1.0
    unit = "time (s)" if seconds_per_clip else "clip index"
    for ax, (name, array) in zip(axes, panels, strict=False):
        if array.ndim == 1 and array.shape[0] == t:
            ax.plot(np.arange(t) * step, array, lw=1.2)
            top = int(np.nanargmax(array))
            ax.axvline(top * step, color="tab:red", lw=0.8, ls="--")
            ax.set_xlabel(unit)
            ax.set_ylabel(name)
        elif array.ndim == 2:
            extent = (0, array.shape[1] * step, array.shape[0] - 0.5, -0.5)
            image = ax.imshow(array, aspect="auto", interpolation="nearest", extent=extent, cmap="viridis")
            figure.colorbar(image, ax=ax, pad=0.01)
            ax.set_xlabel(unit)
            ax.set_ylabel(f"{name} (row)")
        else:
            ax.bar(np.arange(array.shape[0]), array, color="tab:orange")
            ax.set_xlabel(f"{name} index")
            ax.set_ylabel(name)
    figure.savefig(path, dpi=90)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, progress: bool = False) -> Path:
    """Render every video with explanations and an ``index.html`` sorted by absolute error; returns the index.
    ``progress`` shows a bar over the videos (rendering hundreds of plots takes minutes)."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    (out / "videos").mkdir(parents=True, exist_ok=True)
    videos, config = load_run(run_dir)
    seconds = clip_seconds(config.get("provenance"))
    videos.sort(key=lambda v: (-v.error if np.isfinite(v.error) else np.inf, v.id))
    rows = []
    for rank, video in enumerate(tqdm(videos, desc="report", unit="video", disable=not progress), start=1):
        cell = "—"
        if video.arrays:
            png = Path("videos") / f"{_safe(video.id)}.png"
            render_video(video, out / png, seconds)
            cell = f'<a href="{html.escape(png.as_posix())}"><img src="{html.escape(png.as_posix())}" width="360"></a>'
        rows.append(
            f"<tr><td>{rank}</td><td>{html.escape(video.id)}</td><td>{video.truth:.4g}</td>"
            f"<td>{video.prediction:.4g}</td><td>{video.error:.4g}</td><td>{cell}</td></tr>"
        )
    title = f"Explanations: {html.escape(str(_run_field(config, 'head') or run_dir.name))}"
    target = html.escape(str(_run_field(config, "target") or ""))
    axis = f"{seconds:.3g} s per clip" if seconds else "clip index (no fps/clip length in provenance)"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}}</style>
</head><body>
<h1>{title}</h1>
<p>Run: {html.escape(str(run_dir))}. Target: {target}. Time axis: {axis}. {len(videos)} videos, worst first.</p>
<table><thead><tr><th>rank</th><th>video</th><th>true</th><th>predicted</th><th>|error|</th><th>explanation</th>
</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index


def _run_field(config: dict, key: str):
    """A field of the run's config, at the top level or under ``fit`` (where aqa-fit puts head and target)."""
    fit = config.get("fit") if isinstance(config.get("fit"), dict) else {}
    return config.get(key, fit.get(key))


def _safe(name: str) -> str:
    """A file name for a video id (ids can hold path separators or spaces)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
