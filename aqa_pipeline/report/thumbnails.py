"""Keyframes for the report: one small JPEG at the middle of each moment that moved a score most."""

from __future__ import annotations

from pathlib import Path

THUMBNAIL_WIDTH = 240


def write_thumbnails(video: Path, seconds: list[float], folder: Path, stem: str) -> list[Path | None]:
    """``folder/<stem>-<k>.jpg`` for each time in ``seconds`` (None where the video has no frame there)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(video))
    written: list[Path | None] = []
    try:
        for k, second in enumerate(seconds):
            capture.set(cv2.CAP_PROP_POS_MSEC, max(second, 0.0) * 1000.0)
            ok, frame = capture.read()
            if not ok:
                written.append(None)
                continue
            height, width = frame.shape[:2]
            size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
            path = folder / f"{stem}-{k}.jpg"
            cv2.imwrite(str(path), cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
            written.append(path)
    finally:
        capture.release()
    return written


def video_fps(video: Path) -> float | None:
    """The container's frame rate (None when it does not say), to turn stored frame indices into seconds."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 else None
