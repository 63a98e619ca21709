"""The batched extraction loop: store contents, routing of windows, failures, resume, sharding, real videos."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_video import write_counter_video  # tests/ is on sys.path (rootdir conftest, no __init__)

from aqa_pipeline.cli.extract import main as extract_cli
from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.encoders.weights import sha256_of
from aqa_pipeline.extract import VideoJob, extract_features, jobs_from_manifest, jobs_from_paths, shard_jobs
from aqa_pipeline.manifests import Manifest, ManifestRow
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.video.presets import get_preset

torch.set_num_threads(1)

# A small I3D input keeps these loop tests fast: 8-frame clips at 64x64, tiled.
TINY = dataclasses.replace(
    get_preset("gdlt"), name="tiny-test", clip_len=8, resize_to=64, crop_hw=(64, 64), output_hw=(64, 64)
)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return InceptionI3d(map_endpoint="Mixed_4e").eval()


@pytest.fixture
def videos(tmp_path):
    return [write_counter_video(tmp_path / f"v{i}.mp4", n) for i, n in enumerate([20, 16, 5, 33])]


def run(jobs, store, model, **kwargs):
    kwargs = {"workers": 0, "batch_size": 3, "dataset": "synthetic", "progress": False, **kwargs}
    encoder = I3DEncoder(model, LoadedWeights.random())
    return extract_features(jobs, store, encoder=encoder, preset=TINY, **kwargs)


def test_store_holds_features_maps_times_and_padding(tmp_path, videos, tiny_model):
    summary = run(jobs_from_paths(videos), tmp_path / "f.h5", tiny_model)
    assert sorted(summary.done) == ["v0", "v1", "v2", "v3"] and summary.padded == {"v2": 3}
    assert summary.clips == 2 + 2 + 1 + 4  # clips are packed across videos in batches of 3
    store = FeatureStore(tmp_path / "f.h5")
    fs = store.load(["i3d", "i3d_maps"], split="unlabelled")
    by_id = dict(zip(fs.ids, fs.features["i3d"], strict=True))
    assert by_id["v3"].shape == (4, 1024) and by_id["v2"].shape == (1, 1024)
    assert fs.features["i3d_maps"][0].shape[1:] == (528, 2, 4, 4)
    assert dict(zip(fs.ids, fs.times["i3d"], strict=True))["v0"].tolist() == [2, 10]  # 20 frames: trim 2+2
    prov = store.provenance("i3d")
    assert prov["preset"] == "tiny-test" and json.loads(prov["transform"])["clip_len"] == 8
    # the same video in another batch layout gives the same features (batching does not leak across videos)
    alone = run(jobs_from_paths(videos[3:]), tmp_path / "alone.h5", tiny_model, batch_size=1)
    assert alone.done == ["v3"]
    np.testing.assert_allclose(
        FeatureStore(tmp_path / "alone.h5").load("i3d").features["i3d"][0], by_id["v3"], rtol=1e-4, atol=1e-5
    )


def test_windows_of_one_source_are_all_extracted(tmp_path, tiny_model):
    source = write_counter_video(tmp_path / "event.mp4", 60)
    jobs = [
        VideoJob(f"dive{i}", str(source), s, s + 15, {"score": float(i), "split": "train"})
        for i, s in enumerate([0, 10, 40, 10])
    ]
    jobs[3] = dataclasses.replace(jobs[3], id="dive1_again")
    run(jobs, tmp_path / "w.h5", tiny_model, workers=1)  # decoding in a worker process
    fs = FeatureStore(tmp_path / "w.h5").load("i3d", split="train")
    feats = dict(zip(fs.ids, fs.features["i3d"], strict=True))
    assert len(feats) == 4 and np.allclose(feats["dive1"], feats["dive1_again"])
    assert not np.allclose(feats["dive0"], feats["dive2"])
    assert dict(zip(fs.ids, fs.times["i3d"], strict=True))["dive2"].tolist() == [40, 48]


def test_a_failing_video_is_recorded_and_the_rest_continue(tmp_path, videos, tiny_model):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    jobs = jobs_from_paths([videos[0], corrupt, tmp_path / "missing.mp4", videos[1]])
    summary = run(jobs, tmp_path / "f.h5", tiny_model)
    assert sorted(summary.done) == ["v0", "v1"]
    assert [f.id for f in summary.failed] == ["corrupt", "missing"]
    lines = [json.loads(line) for line in summary.failures_path.read_text().splitlines()]
    assert "missing.mp4" in lines[1]["reason"] and "corrupt.mp4" in lines[0]["reason"]
    assert FeatureStore(tmp_path / "f.h5").video_ids() == ["v0", "v1"]


class _InterruptAfter(InceptionI3d):
    """Raises KeyboardInterrupt (Ctrl-C) on the n-th forward pass."""

    def __init__(self, n: int) -> None:
        super().__init__(map_endpoint="Mixed_4e")
        self.calls, self.n = 0, n

    def forward(self, x, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().forward(x, **kwargs)


def test_ctrl_c_keeps_finished_videos_and_a_rerun_resumes(tmp_path, videos, tiny_model):
    jobs = jobs_from_paths(videos)
    store = tmp_path / "f.h5"
    interrupted = _InterruptAfter(3)
    interrupted.load_state_dict(tiny_model.state_dict())
    with pytest.raises(KeyboardInterrupt):
        run(jobs, store, interrupted, batch_size=2)  # batch 1 finishes v0, batch 2 finishes v1, batch 3 dies
    assert not store.exists()  # the index is only written by a shard that completed
    assert list((tmp_path / "f.h5.shards").glob("*.partial"))
    summary = run(jobs, store, tiny_model, batch_size=2)
    assert summary.skipped == 2 and sorted(summary.done) == ["v2", "v3"]
    assert FeatureStore(store).video_ids() == ["v0", "v1", "v2", "v3"]


def test_limit_and_deterministic_shards(tmp_path, videos, tiny_model):
    jobs = jobs_from_paths(videos)
    assert [j.id for j in shard_jobs(jobs, 2, 1)] == ["v1", "v3"]
    first = run(jobs, tmp_path / "s.h5", tiny_model, num_shards=2, shard_index=0, limit=1)
    assert first.done == ["v0"]
    rest = run(jobs, tmp_path / "s.h5", tiny_model, num_shards=2, shard_index=0)
    assert rest.done == ["v2"] and rest.skipped == 1


def test_manifest_rows_become_labelled_jobs(tmp_path, tiny_model):
    (tmp_path / "videos").mkdir()
    source = write_counter_video(tmp_path / "videos" / "01.mp4", 50)
    manifest = Manifest(
        name="mtl-aqa",
        rows=[
            ManifestRow("01_01", "01", 0, 20, "train", 71.4, difficulty=3.2, subscores={"judge1": 8.0}),
            ManifestRow("01_02", "01", 25, 49, "test", 55.0, difficulty=2.0),
        ],
    )
    jobs = jobs_from_manifest(manifest, tmp_path / "videos")
    assert jobs[0].path == str(source) and jobs[0].labels["difficulty"] == 3.2
    run(jobs, tmp_path / "m.h5", tiny_model)
    store = FeatureStore(tmp_path / "m.h5")
    assert store.video_ids(split="test") == ["01_02"] and store.labels("01_01")["judge1"] == 8.0


def test_duplicate_stems_are_refused(tmp_path):
    with pytest.raises(ValueError, match="both get video id 'clip'"):
        jobs_from_paths([tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"])


def test_cli_help_teaches_and_validates():
    runner = CliRunner()
    result = runner.invoke(extract_cli, ["--help"])
    assert result.exit_code == 0 and "aqa-extract --dataset mtl-aqa" in result.output
    result = runner.invoke(extract_cli, ["--out", "x.h5"])
    assert result.exit_code != 0 and "either --dataset" in result.output


def test_real_dive_extracts_under_mtl_aqa_with_padding_reported(tmp_path, weights_dir, data_dir):
    """End to end on real data: the 21-frame dive → 103-frame CoRe window (82 frames padded) → 10×1024."""
    encoder = I3DEncoder.load(weights_dir / "i3d_rgb_kinetics400.pt")
    jobs = jobs_from_paths([data_dir / "videos" / "mtl_aqa_dive_sample.mp4"])
    summary = extract_features(
        jobs,
        tmp_path / "dive.h5",
        encoder=encoder,
        preset=get_preset("mtl-aqa"),
        dataset="custom",
        workers=0,
        batch_size=10,
        progress=False,
    )
    assert summary.padded == {"mtl_aqa_dive_sample": 82}
    assert summary.clips == 3  # clips 2..9 are all frame 20 repeated: encoded once
    store = FeatureStore(tmp_path / "dive.h5")
    fs = store.load("i3d", split="unlabelled")
    feats = fs.features["i3d"][0]
    assert feats.shape == (10, 1024) and np.isfinite(feats).all() and np.array_equal(feats[2], feats[9])
    assert fs.times["i3d"][0].tolist() == [
        0,
        10,
        20,
        20,
        20,
        20,
        20,
        20,
        20,
        20,
    ]  # clips past frame 20 are padding
    provenance = store.provenance("i3d")
    assert provenance["clip_starts"] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 86]
    # the hash of the file actually loaded, not the registry's expectation
    assert provenance["weights_sha256"] == sha256_of(weights_dir / "i3d_rgb_kinetics400.pt")


def test_cli_on_a_real_video_shows_predictions_and_padding(tmp_path, weights_dir, data_dir, monkeypatch):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    video = data_dir / "videos" / "mtl_aqa_dive_sample.mp4"
    args = ["--videos", str(video), "--out", str(tmp_path / "c.h5"), "--preset", "mtl-aqa", "--cpu"]
    result = CliRunner().invoke(extract_cli, [*args, "--workers", "0", "--show-pred"])
    assert result.exit_code == 0, result.output
    assert "mtl_aqa_dive_sample top-1: " in result.output and "+82 frames" in result.output
    assert threads == []  # on CPU the model keeps every core; decoding workers do not take threads from it
    again = CliRunner().invoke(extract_cli, [*args, "--workers", "0", "--threads", "1"])
    assert again.exit_code == 0 and "0 videos extracted" in again.output and "1 already done" in again.output
    assert threads == [1]
    scripted = CliRunner().invoke(extract_cli, [*args, "--workers", "0", "--json"])
    assert scripted.exit_code == 0 and json.loads(scripted.stdout)["skipped"] == 1
