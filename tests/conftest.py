"""Shared fixtures. Real-data fixtures skip with a reason when their variable is unset, but fail under CI=true:
CI points AQA_WEIGHTS_DIR / AQA_DATA_DIR at ../shared, and a silent skip there would hide a broken test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Ultralytics must never reach the network or write into $HOME during tests.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))


def _real_dir(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is unset: set it to the folder with {what} to run this real-data test"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: real-data tests must run in CI)")
        pytest.skip(message)
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{variable}={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The real checkpoints (../shared/weights)."""
    return _real_dir(
        "AQA_WEIGHTS_DIR", "the real checkpoints (i3d_rgb_kinetics400.pt, nanotrack_v2.pth, ...)"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data (../shared/data: annotations/, videos/, fisv/)."""
    return _real_dir("AQA_DATA_DIR", "annotations/, videos/ and fisv/")


@pytest.fixture(scope="session")
def oracles_dir() -> Path:
    """Independent third-party implementations (../shared/oracles), imported only by tests."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "oracles"
    if default.is_dir():
        os.environ.setdefault("AQA_ORACLES_DIR", str(default))
    return _real_dir("AQA_ORACLES_DIR", "the oracle implementations (video_swin_official/, ...)")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """A headless-capable Chromium for the report's browser test: $AQA_CHROMIUM, else `chromium` on PATH (the
    Debian package that .ci/run installs), driven through Playwright."""
    import shutil

    pytest.importorskip("playwright.sync_api", reason="playwright (a dev extra) is not installed")
    found = os.environ.get("AQA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        message = (
            "no chromium: install the Debian package `chromium` or set AQA_CHROMIUM to a Chromium binary"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: the browser test must run in CI)")
        pytest.skip(message)
    return Path(found)
