"""The weights registry: resolution order, hash checks, downloads (served from a local file://), offline errors."""

from __future__ import annotations

import hashlib
import os

import pytest

from aqa_pipeline.encoders import weights
from aqa_pipeline.encoders.weights import WeightsNotFoundError, WeightsSpec, resolve_weights


@pytest.fixture
def fake_spec(tmp_path, monkeypatch):
    payload = b"checkpoint bytes"
    source = tmp_path / "upstream" / "model-abc.pt"
    source.parent.mkdir()
    source.write_bytes(payload)
    spec = WeightsSpec(
        name="fake",
        filename="fake.pt",
        url=source.as_uri(),
        sha256=hashlib.sha256(payload).hexdigest(),
        description="a test checkpoint",
        license="none",
    )
    monkeypatch.setitem(weights.REGISTRY, "fake", spec)
    monkeypatch.setenv("AQA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AQA_WEIGHTS_DIR", raising=False)
    return spec, payload


def test_resolution_order(fake_spec, tmp_path, monkeypatch):
    spec, payload = fake_spec
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(payload)
    assert resolve_weights("fake", explicit) == explicit
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "fake.pt").write_bytes(payload)
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(env_dir))
    assert resolve_weights("fake") == env_dir / "fake.pt"
    monkeypatch.delenv("AQA_WEIGHTS_DIR")
    downloaded = resolve_weights("fake")  # not on disk: fetched from the URL into the cache, hash-checked
    assert downloaded == tmp_path / "cache" / "fake.pt" and downloaded.read_bytes() == payload


def test_corrupt_file_is_refused(fake_spec, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"something else")
    with pytest.raises(ValueError, match="does not match the registry"):
        resolve_weights("fake", bad)


def test_offline_error_says_what_to_place_where(fake_spec, monkeypatch):
    spec, _ = fake_spec
    monkeypatch.setitem(
        weights.REGISTRY, "fake", WeightsSpec(**{**spec.__dict__, "url": "http://127.0.0.1:9/x.pt"})
    )
    with pytest.raises(WeightsNotFoundError, match=r"Place fake.pt in \$AQA_WEIGHTS_DIR"):
        resolve_weights("fake")
    with pytest.raises(KeyError, match="unknown weights 'nope'"):
        resolve_weights("nope")


@pytest.mark.realdata
def test_real_weights_match_the_registry(weights_dir, monkeypatch):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    for name in (
        "i3d_kinetics400",
        "kinetics400_labels",
        "nanotrack_v2",
        "nanotrack_v2_backbone_onnx",
        "nanotrack_v2_head_onnx",
        "mobilenet_v2_imagenet",
    ):
        assert resolve_weights(name, download=False).parent == weights_dir


def test_sha256_of_reads_a_file_once_per_version(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(b"first")
    opened = []
    real_open = open
    monkeypatch.setattr(
        weights, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k), raising=False
    )
    assert weights.sha256_of(path) == weights.sha256_of(str(path)) == hashlib.sha256(b"first").hexdigest()
    assert len(opened) == 1  # the second call (verify, then provenance) does not read it again
    path.write_bytes(b"second, longer")
    os.utime(path, ns=(1, 1))
    assert weights.sha256_of(path) == hashlib.sha256(b"second, longer").hexdigest() and len(opened) == 2
