"""End to end on real data: ``aqa-extract`` (real I3D, NanoTrack V2 and MobileNetV2 weights) writes a store from the
real weightlifting video, and ``aqa-fit`` trains every head that consumes its kinds. Plumbing, not accuracy: the
labels are made up (the sample videos are unlabelled), so only completeness of the run directories is asserted.

The samples are eight 64-frame windows of the clip, listed in a small manifest CSV with scores and splits. One
source video means one frame size, which the TSA head needs in the ``boxes`` provenance. The athlete box
(112, 83, 192, 200) is the lifter on frame 0 (the tracker tests' box); the lifter stays on the platform, so it is
a fair first box for the later windows too.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline.cli.extract import main as extract_cli
from aqa_pipeline.cli.fit import main as fit_cli
from aqa_pipeline.store import FeatureStore

pytestmark = pytest.mark.slow
torch.set_num_threads(
    1
)  # aqa-extract then uses 1 model thread (--workers 0); more oversubscribes 2 shared cores

VIDEO = "weightlifting_clean_and_jerk"
WINDOWS = [(start, start + 63) for start in range(0, 240, 30)]  # 8 samples; each 1 clip under 'action-net'
SPLITS = ["train", "train", "test", "train", "train", "train", "test", "train"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, weights_dir, data_dir):
    folder = tmp_path_factory.mktemp("e2e")
    manifest = folder / "lifts.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "video", "start_frame", "end_frame", "split", "score", "difficulty", "action_class"]
        )
        for i, ((start, end), split) in enumerate(zip(WINDOWS, SPLITS, strict=True)):
            writer.writerow([f"lift_{i:02d}", VIDEO, start, end, split, 60.0 + 3.5 * i, "", ""])
    path = folder / "lifts.h5"
    args = [
        "--dataset", str(manifest), "--video-root", str(data_dir / "videos"), "--out", str(path),
        "--preset", "action-net", "--cpu", "--workers", "0", "--batch-size", "8",
        "--maps", "--maps-endpoint", "Mixed_5c",  # TSA's light variant: tube attention on the Mixed_5c maps
        "--boxes", "--init-box", "112,83,192,200",
        "--actor",
        "--crops", "mobilenet_v2", "--crop-boxes", "tracked",
    ]  # fmt: skip
    env = {"AQA_WEIGHTS_DIR": str(weights_dir)}
    result = CliRunner(env=env).invoke(extract_cli, args)
    assert result.exit_code == 0, result.output
    assert "8 videos extracted (16 clips" in result.output  # 8 scene + 8 actor clips
    return path


def test_the_store_holds_every_kind_for_every_sample(store):
    fs = FeatureStore(store)
    assert fs.kinds == ["boxes", "i3d", "i3d_actor", "i3d_maps", "mobilenet_crops"]
    assert fs.splits() == {"train": 6, "test": 2}
    data = fs.load(fs.kinds)
    for i, vid in enumerate(data.ids):
        assert data.features["i3d"][i].shape == (1, 1024) == data.features["i3d_actor"][i].shape
        assert data.features["i3d_maps"][i].shape == (1, 1024, 2, 7, 7)
        assert data.features["mobilenet_crops"][i].shape == (4, 1280)  # 1 fps over 64 frames at 19.6 fps
        boxes, times = data.features["boxes"][i], data.times["boxes"][i]
        assert boxes.shape == (16, 5) and np.isfinite(boxes).all()
        start = WINDOWS[int(vid[-2:])][0]
        assert times[0] == data.times["i3d"][i][0] and times[0] >= start  # 5 fps: every 4th frame
        assert (np.diff(times) == 4).all()
    prov = fs.provenance("mobilenet_crops")
    assert prov["weights_sha256"] != "unverified" and prov["box_rule"] == "tracked"
    assert fs.provenance("boxes")["frame_size"] == [320, 240]


HEADS = {
    "mlp": (["--feature", "i3d", "--set", "epochs=3"], {}),
    "tsa": (
        [
            "--feature",
            "i3d_maps",
            "--set",
            "variant=light",
            "--set",
            "output=regression",
            "--set",
            "epochs=2",
            "--set",
            "batch_size=2",
        ],
        {},
    ),  # fmt: skip
    "action-net": (
        ["--feature", "i3d", "--set", "epochs=2", "--set", "batch_size=4"],
        {},  # the static role picks up mobilenet_crops by itself
    ),  # fmt: skip
    "fspn": (["--feature", "i3d", "--set", "size=small", "--set", "epochs=2"], {}),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_aqa_fit_trains_each_actor_aware_head_on_the_extracted_store(head, store, tmp_path):
    options, config = HEADS[head]
    out = tmp_path / head
    args = [str(store), "--head", head, "--out", str(out), "--quiet", "--no-final-model", *options]
    if config:
        (tmp_path / "config.json").write_text(json.dumps(config))
        args += ["--config", str(tmp_path / "config.json")]
    result = CliRunner().invoke(fit_cli, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 2
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["id"] for r in rows) == ["lift_02", "lift_06"]
    assert all(np.isfinite(float(r["prediction"])) for r in rows)
    inputs = json.loads((out / "run.json").read_text())
    expected_extras = {"tsa": "boxes", "action-net": "mobilenet_crops", "fspn": "i3d_actor"}.get(head)
    assert (expected_extras in inputs["extras"].values()) if expected_extras else not inputs["extras"]
