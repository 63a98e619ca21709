"""aqa-extract --engine ray in Ray local mode (2 CPUs): the same store as the local engine, failures isolated,
a killed encoder actor or a killed driver losing nothing, and the CLI path."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_extract import TINY, run  # tests/ is on sys.path (rootdir conftest, no __init__)
from test_extract_actors import LIFTER
from test_video import write_counter_video

from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.cli.extract import main as extract_cli
from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.encoders.image import ImageEncoder
from aqa_pipeline.encoders.weights import sha256_of
from aqa_pipeline.extract import VideoJob, jobs_from_paths
from aqa_pipeline.extract.ray_engine import RayPlan, extract_features_ray
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.track.nanotrack import nanotrack_v2

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra (in [dev])")
pytestmark = pytest.mark.slow


TESTS = Path(__file__).parent


def _with_tests_on_path(environ) -> dict[str, str]:
    """The environment with tests/ on PYTHONPATH: Ray's workers unpickle encoders defined in these tests."""
    return {**environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def local_ray():
    saved = dict(os.environ)
    os.environ.update(_with_tests_on_path(os.environ))  # the workers Ray starts inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return InceptionI3d(map_endpoint="Mixed_4e").eval()


# half a CPU per decoding task leaves room for it beside the encoder actor on 2 CPUs
TEST_PLAN = RayPlan(decode_cpus=0.5, cpus_per_actor=1)


def run_ray(jobs, store, model, plan=TEST_PLAN, **kwargs):
    encoder = I3DEncoder(model, LoadedWeights.random())
    return extract_features_ray(
        jobs, store, encoder=encoder, preset=TINY, dataset="synthetic", plan=plan, batch_size=3,
        progress=False, **kwargs,
    )  # fmt: skip


def stores_match(a: Path, b: Path) -> None:
    left, right = FeatureStore(a), FeatureStore(b)
    assert sorted(left.video_ids()) == sorted(right.video_ids()) and left.kinds == right.kinds
    for kind in left.kinds:
        assert left.provenance(kind) == right.provenance(kind)
        one, two = left.load(kind), right.load(kind)
        by_id = dict(zip(two.ids, zip(two.features[kind], two.times[kind], strict=True), strict=True))
        for video_id, feature, times in zip(one.ids, one.features[kind], one.times[kind], strict=True):
            np.testing.assert_allclose(feature, by_id[video_id][0], rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(times, by_id[video_id][1])


def test_ray_store_equals_the_local_store_and_failures_stay_alone(tmp_path, local_ray, tiny_model):
    videos = [write_counter_video(tmp_path / f"v{i}.mp4", n) for i, n in enumerate([20, 16, 5, 33, 12])]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    jobs = jobs_from_paths([*videos, corrupt])
    local = run(jobs, tmp_path / "local.h5", tiny_model)
    on_ray = run_ray(jobs, tmp_path / "ray.h5", tiny_model)
    assert sorted(on_ray.done) == sorted(local.done) == ["v0", "v1", "v2", "v3", "v4"]
    assert [f.id for f in on_ray.failed] == ["corrupt"] and on_ray.padded == local.padded == {"v2": 3}
    assert on_ray.clips == local.clips and on_ray.encode_seconds > 0
    stores_match(tmp_path / "local.h5", tmp_path / "ray.h5")
    again = run_ray(jobs, tmp_path / "ray.h5", tiny_model)  # resume: only the failed video is retried
    assert again.skipped == 5 and again.done == [] and [f.id for f in again.failed] == ["corrupt"]


class _DiesOnce(InceptionI3d):
    """SIGKILLs its own process (the encoder actor) on its n-th forward pass, the first time only (a marker
    file remembers), as a lost worker or node would."""

    def __init__(self, n: int, marker: Path) -> None:
        super().__init__(map_endpoint="Mixed_4e")
        self.calls, self.n, self.marker = 0, n, str(marker)

    def forward(self, x, **kwargs):
        self.calls += 1
        if self.calls == self.n and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x, **kwargs)


def test_a_killed_encoder_actor_is_replaced_and_every_video_lands_once(tmp_path, local_ray, tiny_model):
    videos = [write_counter_video(tmp_path / f"v{i}.mp4", n) for i, n in enumerate([20, 16, 5, 33, 12, 9])]
    jobs = jobs_from_paths(videos)
    dying = _DiesOnce(3, tmp_path / "killed")
    dying.load_state_dict(tiny_model.state_dict())
    summary = run_ray(jobs, tmp_path / "ray.h5", dying)
    assert (tmp_path / "killed").exists()  # the actor really died mid-run
    assert sorted(summary.done) == [f"v{i}" for i in range(6)] and summary.failed == []
    run(jobs, tmp_path / "local.h5", tiny_model)
    stores_match(tmp_path / "local.h5", tmp_path / "ray.h5")


DRIVER = """
import sys, torch
from aqa_pipeline.cli.extract import main as extract_cli
from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.encoders.weights import sha256_of
from aqa_pipeline.actors import ActorOptions
from aqa_pipeline.encoders.image import ImageEncoder
from aqa_pipeline.extract import VideoJob, jobs_from_paths
from aqa_pipeline.track.nanotrack import nanotrack_v2
from aqa_pipeline.extract import run as run_module
from aqa_pipeline.extract.ray_engine import RayPlan, extract_features_ray
from test_extract import TINY

finished = run_module.StoreOutput.finished
def announce(self, video_id, *args):
    finished(self, video_id, *args)
    print("wrote", video_id, flush=True)
run_module.StoreOutput.finished = announce
torch.manual_seed(0)
model = InceptionI3d(map_endpoint="Mixed_4e").eval()
address, store, *videos = sys.argv[1:]
extract_features_ray(jobs_from_paths(videos), store, encoder=I3DEncoder(model, LoadedWeights.random()),
                     preset=TINY, dataset="synthetic", plan=RayPlan(address, decode_cpus=0.5), batch_size=1,
                     progress=False)
"""


def test_a_driver_killed_mid_run_keeps_what_it_wrote_and_the_rerun_adds_each_video_once(
    tmp_path, local_ray, tiny_model
):
    videos = [write_counter_video(tmp_path / f"v{i}.mp4", 20 + 4 * i) for i in range(8)]
    store = tmp_path / "ray.h5"
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, address, str(store), *map(str, videos)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_with_tests_on_path(os.environ),
    )  # fmt: skip
    written = []
    deadline = time.monotonic() + 120
    while len(written) < 2 and time.monotonic() < deadline:
        line = driver.stdout.readline()
        if not line:
            break
        if line.startswith("wrote "):
            written.append(line.split()[1])
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    assert len(written) == 2, "the driver should have written two videos before it was killed"
    assert not store.exists()  # the index is only written by a shard that completed
    jobs = jobs_from_paths(videos)
    resumed = run_ray(jobs, store, tiny_model)
    # the kill may land after a third write: whatever was written is kept, the rest is done now, none twice
    assert resumed.skipped >= 2 and resumed.skipped + len(resumed.done) == len(jobs)
    assert set(resumed.done).isdisjoint(written) and resumed.failed == []
    ids = FeatureStore(store).video_ids()
    assert sorted(ids) == sorted(j.id for j in jobs) and len(ids) == len(set(ids))
    run(jobs, tmp_path / "local.h5", tiny_model)
    stores_match(tmp_path / "local.h5", store)


@pytest.mark.realdata
def test_cli_engine_ray_on_the_real_dive_with_the_real_i3d(
    tmp_path, local_ray, weights_dir, data_dir, monkeypatch
):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    video = data_dir / "videos" / "mtl_aqa_dive_sample.mp4"
    args = ["--videos", str(video), "--preset", "mtl-aqa", "--cpu", "--threads", "1"]
    on_ray = CliRunner().invoke(
        extract_cli, [*args, "--out", str(tmp_path / "r.h5"), "--engine", "ray", "--json"]
    )
    assert on_ray.exit_code == 0, on_ray.output
    assert json.loads(on_ray.stdout)["done"] == ["mtl_aqa_dive_sample"]
    local = CliRunner().invoke(extract_cli, [*args, "--out", str(tmp_path / "l.h5"), "--workers", "0"])
    assert local.exit_code == 0, local.output
    ray_store, local_store = FeatureStore(tmp_path / "r.h5"), FeatureStore(tmp_path / "l.h5")
    assert ray_store.provenance("i3d") == local_store.provenance("i3d")
    assert ray_store.provenance("i3d")["weights_sha256"] == sha256_of(weights_dir / "i3d_rgb_kinetics400.pt")
    np.testing.assert_allclose(
        ray_store.load("i3d").features["i3d"][0], local_store.load("i3d").features["i3d"][0], atol=1e-4
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [(["--engine", "ray", "--workers", "2"], "--workers"),
     (["--ray-actors", "2"], "--ray-actors"), (["--engine", "ray", "--show-pred", "--limit", "1"], "--show-pred, --limit")],
)  # fmt: skip
def test_cli_refuses_what_the_ray_engine_cannot_do_before_any_work(tmp_path, extra, named):
    video = write_counter_video(tmp_path / "v.mp4", 8)
    result = CliRunner().invoke(
        extract_cli, ["--videos", str(video), "--out", str(tmp_path / "f.h5"), *extra]
    )
    assert result.exit_code == 2 and named in result.output
    assert not (tmp_path / "f.h5.shards").exists()


@pytest.mark.realdata
def test_athlete_kinds_on_ray_equal_the_local_ones(tmp_path, local_ray, weights_dir, data_dir, tiny_model):
    """Tracked boxes, actor clips and tracked-box crops: tracking in the decoding tasks, crops encoded in the
    actors, the same store as the local engine (the real NanoTrack V2 on the real weightlifting clip)."""
    video = str(data_dir / "videos" / "weightlifting_clean_and_jerk.mp4")
    jobs = [VideoJob(f"lift{i}", video, start, start + 40, {"split": "train", "score": float(i)})
            for i, start in enumerate([0, 30])]  # fmt: skip
    options = ActorOptions(store_boxes=True, actor_clips=True, crop_encoder=ImageEncoder.random("mobilenet_v2"),
                           tracker=nanotrack_v2(weights_dir / "nanotrack_v2.pth"), init_boxes=LIFTER,
                           crop_boxes="tracked")  # fmt: skip
    local = run(jobs, tmp_path / "local.h5", tiny_model, actors=options)
    on_ray = run_ray(jobs, tmp_path / "ray.h5", tiny_model, actors=options)
    assert sorted(on_ray.done) == sorted(local.done) == ["lift0", "lift1"]
    assert FeatureStore(tmp_path / "ray.h5").kinds == [
        "boxes",
        "i3d",
        "i3d_actor",
        "i3d_maps",
        "mobilenet_crops",
    ]
    stores_match(tmp_path / "local.h5", tmp_path / "ray.h5")


@dataclasses.dataclass(frozen=True)
class _PidLoggingPreset(type(TINY)):
    """TINY, leaving a file named after each process that decodes a frame."""

    pid_dir: str = ""

    def transform_frame(self, frame):
        Path(self.pid_dir, f"decode-{os.getpid()}").touch()
        return super().transform_frame(frame)


class _PidLoggingI3D(InceptionI3d):
    def __init__(self, pid_dir: Path) -> None:
        super().__init__(map_endpoint="Mixed_4e")
        self.pid_dir = str(pid_dir)

    def forward(self, x, **kwargs):
        Path(self.pid_dir, f"encode-{os.getpid()}").touch()
        return super().forward(x, **kwargs)


def test_decoding_runs_in_tasks_apart_from_the_encoder_actors(tmp_path, local_ray, tiny_model):
    """With the CLI's default plan (1 CPU per decoding task and per actor) Ray Data would fuse decoding into
    the actors; it must not: decoding and encoding happen in different processes."""
    pids = tmp_path / "pids"
    pids.mkdir()
    videos = [write_counter_video(tmp_path / f"v{i}.mp4", 12) for i in range(4)]
    model = _PidLoggingI3D(pids)
    model.load_state_dict(tiny_model.state_dict())
    preset = _PidLoggingPreset(
        **{f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)}, pid_dir=str(pids)
    )
    summary = extract_features_ray(
        jobs_from_paths(videos), tmp_path / "s.h5", encoder=I3DEncoder(model, LoadedWeights.random()),
        preset=preset, dataset="synthetic", plan=RayPlan(), batch_size=2, progress=False,
    )  # fmt: skip
    assert len(summary.done) == 4
    decoders = {p.name.split("-")[1] for p in pids.glob("decode-*")}
    encoders = {p.name.split("-")[1] for p in pids.glob("encode-*")}
    assert decoders and encoders and not decoders & encoders
