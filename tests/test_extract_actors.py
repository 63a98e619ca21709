"""The athlete-centred kinds of aqa-extract: tracked boxes, person crops, actor clips (aqa_pipeline.actors)."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline import actors
from aqa_pipeline.actors import ActorOptions, actor_square, crop_frame_indices, cut_square, parse_box
from aqa_pipeline.cli import extract as extract_cli_module
from aqa_pipeline.cli.extract import main as extract_cli
from aqa_pipeline.detect.crops import BoxSource
from aqa_pipeline.encoders.base import LoadedWeights
from aqa_pipeline.encoders.i3d import I3DEncoder, InceptionI3d
from aqa_pipeline.encoders.image import ImageEncoder
from aqa_pipeline.extract import VideoJob, extract_features
from aqa_pipeline.extract.tracking import TrackRequest, track_wave, wave_tracker
from aqa_pipeline.heads.tsa import TSAHead
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.store.schema import read_attrs
from aqa_pipeline.track.nanotrack import box_iou, nanotrack_v2
from aqa_pipeline.video.decode import open_video
from aqa_pipeline.video.presets import get_preset

torch.set_num_threads(1)

LIFTER = (112.0, 83.0, 192.0, 200.0)  # xyxy on frame 0 of the weightlifting clip (the tracker tests' box)
# Small I3D inputs keep these tests fast; the clip layouts are the real presets'.
TINY_TILED = dataclasses.replace(
    get_preset("gdlt"), name="tiny-tiled", clip_len=8, resize_to=64, crop_hw=(64, 64), output_hw=(64, 64)
)
TINY_MTL = dataclasses.replace(
    get_preset("mtl-aqa"), name="tiny-mtl", resize_to=(114, 64), crop_hw=(64, 64), output_hw=(64, 64)
)


@pytest.fixture(scope="module")
def i3d():
    torch.manual_seed(0)
    return InceptionI3d(map_endpoint="Mixed_4e").eval()


@pytest.fixture(scope="module")
def mobilenet():
    return ImageEncoder.random("mobilenet_v2")


@pytest.fixture(scope="module")
def tracker(weights_dir):
    return nanotrack_v2(weights_dir / "nanotrack_v2.pth")


def extract(jobs, store, i3d, options, preset=TINY_TILED, **kwargs):
    encoder = I3DEncoder(i3d, LoadedWeights.random())
    return extract_features(jobs, store, encoder=encoder, preset=preset, dataset="test",
                            workers=0, batch_size=4, actors=options, progress=False, **kwargs)  # fmt: skip


def feature_attrs(store, video_id, kind):
    with h5py.File(store) as handle:
        return read_attrs(handle[f"videos/{video_id}/{kind}"])


# -- geometry ---------------------------------------------------------------------------------------------------
def test_actor_square_is_the_enlarged_union_kept_inside_the_frame():
    boxes = np.array([[100, 50, 140, 130], [120, 60, 160, 150]], dtype=np.float32)  # union 100..160 x 50..150
    x0, y0, side = actor_square(boxes, margin=0.1, frame_w=320, frame_h=240)
    assert side == 120  # longer side 100 + 2 x 10%
    assert (x0, y0) == (70, 40)  # centred on the union's centre (130, 100)
    x0, y0, side = actor_square(boxes + [180, 0, 180, 0], 0.1, 320, 240)  # near the right edge: shifted in
    assert x0 + side == 320 and side == 120
    x0, y0, side = actor_square(np.array([[0, 0, 300, 230]]), 0.1, 320, 240)  # taller than the frame: centred
    assert side == 360 and (x0, y0) == (-20, -60)


def test_cut_square_pads_black_beyond_the_frame_and_resizes():
    frame = np.full((10, 10, 3), 200, np.uint8)
    patch = cut_square(frame, -5, 0, 10, 20)
    assert patch.shape == (20, 20, 3)
    assert (patch[:, :8] == 0).all() and (patch[:, 12:] == 200).all()


def test_crop_frames_one_per_second_from_the_first_frame():
    assert crop_frame_indices(0, 21, fps=10.0, per_second=1.0).tolist() == [0, 10, 20]
    assert crop_frame_indices(100, 160, fps=19.62, per_second=1.0).tolist() == [100, 120, 139, 159]


def test_boxes_are_parsed_and_checked(mobilenet):
    assert parse_box("1,2,3,4", "box").tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="x1 < x2"):
        parse_box([5, 2, 3, 4], "--init-box")
    with pytest.raises(ValueError, match="needs a person detector"):
        ActorOptions(crop_encoder=mobilenet).check()
    with pytest.raises(ValueError, match="need a tracker"):
        ActorOptions(store_boxes=True, init_boxes=LIFTER).check()


def test_cli_constants_match_the_library():
    # the CLI keeps literal copies so that --help does not import torch
    assert extract_cli_module.CROP_KINDS == actors.CROP_KINDS
    assert extract_cli_module.CROP_BOX_RULES == actors.CROP_BOX_RULES


# -- the library path on real video ---------------------------------------------------------------------------
def test_lifter_boxes_crops_and_actor_clips_land_in_the_store(tmp_path, data_dir, i3d, tracker, mobilenet):
    video = str(data_dir / "videos" / "weightlifting_clean_and_jerk.mp4")
    jobs = [VideoJob("lift", video, 0, 60, {"split": "train", "score": 1.0})]
    options = ActorOptions(store_boxes=True, actor_clips=True, crop_encoder=mobilenet,
                           tracker=tracker, init_boxes=LIFTER, crop_boxes="tracked")  # fmt: skip
    summary = extract(jobs, tmp_path / "a.h5", i3d, options)
    assert summary.done == ["lift"] and not summary.failed
    store = FeatureStore(tmp_path / "a.h5")
    assert store.kinds == ["boxes", "i3d", "i3d_actor", "i3d_maps", "mobilenet_crops"]
    assert len(list((tmp_path / "a.h5.shards").glob("*.h5"))) == 1  # one writer, one shard for all kinds
    fs = store.load(store.kinds, split="train")
    boxes, box_times = fs.features["boxes"][0], fs.times["boxes"][0]
    clip_times = fs.times["i3d"][0]
    # 61 frames tiled into 7 clips of 8 (the 5 left over trimmed 2 + 3): one box row per frame I3D saw
    assert clip_times.tolist() == [2, 10, 18, 26, 34, 42, 50] and box_times.tolist() == list(range(2, 58))
    assert boxes.shape == (56, 5) and boxes.dtype == np.float32 and (boxes[:, 4] > 0.5).all()
    assert box_iou(boxes[:10, :4], np.array([LIFTER] * 10)).min() > 0.8  # still on the lifter
    assert store.provenance("boxes")["frame_size"] == [320, 240]
    # actor clips: aligned clip for clip with the scene's, but a different picture
    actor = fs.features["i3d_actor"][0]
    assert fs.times["i3d_actor"][0].tolist() == clip_times.tolist() and actor.shape == (7, 1024)
    scene = fs.features["i3d"][0]
    assert np.linalg.norm(actor - scene) > 0.05 * np.linalg.norm(scene)
    assert "union" in store.provenance("i3d_actor")["crop"]
    # 1 fps crops on the tracked box
    crops, crop_times = fs.features["mobilenet_crops"][0], fs.times["mobilenet_crops"][0]
    assert crops.shape == (4, 1280) and crop_times.tolist() == [0, 20, 39, 59]  # 1 fps over the 61 frames
    attrs = feature_attrs(tmp_path / "a.h5", "lift", "mobilenet_crops")
    assert attrs["crop_boxes"].shape == (4, 4) and "box_sources" not in attrs
    np.testing.assert_allclose(attrs["crop_boxes"][0], LIFTER)  # frame 0 is the initial box
    assert store.provenance("mobilenet_crops")["box_rule"] == "tracked"


def test_padded_dive_boxes_line_up_with_the_clips_for_tsa(tmp_path, data_dir, i3d, tracker):
    """The 21-frame dive under the CoRe layout: 82 padded frames repeat the last box row, and the TSA head turns
    the boxes into one tube mask per clip."""
    video = str(data_dir / "videos" / "mtl_aqa_dive_sample.mp4")
    options = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=(200, 40, 300, 200))
    jobs = [VideoJob("dive", video, None, None, {"split": "train", "score": 50.0})]
    summary = extract(jobs, tmp_path / "d.h5", i3d, options, preset=TINY_MTL)
    assert summary.padded == {"dive": 82}
    store = FeatureStore(tmp_path / "d.h5")
    fs = store.load(["i3d_maps", "boxes"], split="train")
    boxes, times = fs.features["boxes"][0], fs.times["boxes"][0]
    assert boxes.shape == (103, 5) and times.tolist() == list(range(21)) + [20] * 82
    assert (boxes[21:] == boxes[20]).all()
    data = TSAHead.adapt_inputs(_sequences(fs), fs, primary="i3d_maps", options=TSAHead.Options())
    tube = data.extra["tube"][0]
    assert tube.shape == (10, 4, 4, 4) and tube.any()  # (clips, t steps, grid, grid) on the 64-px maps


def _sequences(fs):
    from aqa_pipeline.train.data import SequenceData

    return SequenceData(
        ids=fs.ids, x=fs.features["i3d_maps"], y=np.zeros(len(fs)), extra={"tube": fs.features["boxes"]}
    )


def test_detector_rules_no_person_and_failed_init_are_isolated(tmp_path, data_dir, i3d, tracker):
    """A randomly initialised YOLO finds nobody: crops fall back to the centred square (recorded per frame), and a
    video whose first-frame detection is empty fails alone while the video with a given box is extracted."""
    from aqa_pipeline.detect.yolo import PersonDetector

    detector = PersonDetector.from_config("yolo11n.yaml", image_size=160)
    video = str(data_dir / "videos" / "weightlifting_clean_and_jerk.mp4")
    jobs = [
        VideoJob("given", video, 0, 24, {"split": "train", "score": 1.0}),
        VideoJob("detected", video, 30, 54, {"split": "train", "score": 2.0}),
    ]
    options = ActorOptions(store_boxes=True, crop_encoder=ImageEncoder.random("resnet50"), tracker=tracker,
                           init_boxes={"given": LIFTER}, detector=detector, crop_boxes="largest")  # fmt: skip
    summary = extract(jobs, tmp_path / "y.h5", i3d, options)
    assert summary.done == ["given"]
    assert summary.failed[0].id == "detected" and "no target on the first frame" in summary.failed[0].reason
    store = FeatureStore(tmp_path / "y.h5")
    assert store.video_ids() == ["given"] and store.load("resnet_crops").features["resnet_crops"][
        0
    ].shape == (
        2,
        2048,
    )
    attrs = feature_attrs(tmp_path / "y.h5", "given", "resnet_crops")
    assert (attrs["box_sources"] == BoxSource.CENTRE).all()
    np.testing.assert_allclose(
        attrs["crop_boxes"][0], [40, 0, 280, 240]
    )  # centred square of the 320x240 frame
    assert "nearest earlier" in store.provenance("resnet_crops")["no_person_rule"]
    # resume: the finished video is skipped, the failed one is tried again (and fails again)
    again = extract(jobs, tmp_path / "y.h5", i3d, options)
    assert again.skipped == 1 and [f.id for f in again.failed] == ["detected"]


def test_sources_of_different_sizes_keep_their_frame_size_per_video(tmp_path, data_dir, i3d, tracker):
    videos = data_dir / "videos"
    boxes = {"lift": list(LIFTER), "dog": [180, 100, 300, 300]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    jobs = [
        VideoJob("lift", str(videos / "weightlifting_clean_and_jerk.mp4"), 0, 15, {"split": "test"}),
        VideoJob("dog", str(videos / "walking_the_dog.mp4"), 0, 15, {"split": "test"}),
    ]
    options = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=boxes)
    extract(jobs, tmp_path / "m.h5", i3d, options)
    store = FeatureStore(tmp_path / "m.h5")
    assert "frame_size" not in store.provenance("boxes") and "frame_size_note" in store.provenance("boxes")
    assert feature_attrs(tmp_path / "m.h5", "dog", "boxes")["frame_size"] == [480, 360]
    assert feature_attrs(tmp_path / "m.h5", "lift", "boxes")["frame_size"] == [320, 240]


# -- command line ----------------------------------------------------------------------------------------------
def test_cli_refuses_bad_actor_options(tmp_path, weights_dir, data_dir, monkeypatch):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    video = str(data_dir / "videos" / "mtl_aqa_dive_sample.mp4")
    base = ["--videos", video, "--out", str(tmp_path / "c.h5"), "--cpu", "--workers", "0"]
    runner = CliRunner()
    result = runner.invoke(extract_cli, [*base, "--boxes", "--init-box", "10,10,5,50"])
    assert result.exit_code == 2 and "x1 < x2" in result.output
    result = runner.invoke(extract_cli, [*base, "--init-box", "1,2,3,4"])
    assert result.exit_code == 2 and "only matter with --boxes" in result.output
    (tmp_path / "bad.json").write_text("[1, 2, 3, 4]")
    result = runner.invoke(extract_cli, [*base, "--actor", "--init-box", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "expected {video id" in result.output
    assert not (tmp_path / "c.h5").exists()


# -- tracking batched across videos ---------------------------------------------------------------------------
WAVE_BOXES = {"lift": LIFTER, "lift_late": LIFTER, "dog": (180, 100, 300, 300), "dive": (200, 40, 300, 200)}


def wave_jobs(videos):
    return [
        VideoJob("lift", str(videos / "weightlifting_clean_and_jerk.mp4"), 0, 40, {"split": "train"}),
        VideoJob("lift_late", str(videos / "weightlifting_clean_and_jerk.mp4"), 100, 130, {"split": "train"}),
        VideoJob("dog", str(videos / "walking_the_dog.mp4"), 0, 35, {"split": "train"}),
        VideoJob("dive", str(videos / "mtl_aqa_dive_sample.mp4"), None, None, {"split": "train"}),
    ]


def stored_boxes(store):
    fs = FeatureStore(store).load("boxes")
    return dict(zip(fs.ids, fs.features["boxes"], strict=True))


def test_boxes_tracked_in_waves_equal_one_video_at_a_time(tmp_path, data_dir, i3d, tracker):
    """Waves of 3 samples (two from one source, so the wave spans sources and shares a reader; the dive makes a
    second wave) give every sample the boxes it gets when each is tracked alone."""
    jobs = wave_jobs(data_dir / "videos")
    runs = {}
    for batch in (1, 3):
        options = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=WAVE_BOXES, track_batch=batch)
        summary = extract(jobs, tmp_path / f"b{batch}.h5", i3d, options)
        assert sorted(summary.done) == sorted(WAVE_BOXES) and not summary.failed
        runs[batch] = stored_boxes(tmp_path / f"b{batch}.h5")
    for video_id, alone in runs[1].items():
        batched = runs[3][video_id]
        assert batched.shape == alone.shape
        assert box_iou(batched[:, :4], alone[:, :4]).min() > 0.99, video_id
        np.testing.assert_allclose(batched[:, 4], alone[:, 4], atol=1e-3)


def test_a_wave_with_failing_samples_writes_the_others_and_resumes(tmp_path, data_dir, i3d, tracker):
    """In one wave: a box outside the frame and a video without a box (no detector) fail alone; the others are
    stored as if tracked alone, and a second run skips them and retries only the failures."""
    jobs = wave_jobs(data_dir / "videos")
    boxes = {**WAVE_BOXES, "dog": (600, 10, 700, 100)}  # the dog video is 480 wide
    del boxes["lift_late"]
    options = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=boxes, track_batch=8)
    summary = extract(jobs, tmp_path / "f.h5", i3d, options)
    assert sorted(summary.done) == ["dive", "lift"]
    reasons = {failure.id: failure.reason for failure in summary.failed}
    assert "starts outside the 480x360 frame" in reasons["dog"]
    assert "no initial box in the box file" in reasons["lift_late"]
    alone = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=WAVE_BOXES, track_batch=1)
    extract(jobs[:1], tmp_path / "alone.h5", i3d, alone)
    assert (
        box_iou(
            stored_boxes(tmp_path / "f.h5")["lift"][:, :4], stored_boxes(tmp_path / "alone.h5")["lift"][:, :4]
        ).min()
        > 0.99
    )
    again = extract(jobs, tmp_path / "f.h5", i3d, options)
    assert again.skipped == 2 and sorted(f.id for f in again.failed) == ["dog", "lift_late"]


def test_a_decode_error_mid_wave_ends_only_that_video(data_dir, tracker):
    """A window running past the end of its video fails to decode after its first chunk: that sample is reported,
    its wave-mates are tracked to their last frame."""
    path = str(data_dir / "videos" / "weightlifting_clean_and_jerk.mp4")  # 355 frames
    reader = open_video(path)
    requests = [
        TrackRequest("whole", path, reader, 0, 50),
        TrackRequest("past_the_end", path, reader, 300, 400),
        TrackRequest("late", path, reader, 10, 45),
    ]
    options = ActorOptions(store_boxes=True, tracker=tracker, init_boxes=LIFTER)
    out = track_wave(wave_tracker(options, "cpu"), requests, options, max_batch=8)
    assert sorted(out.tracks) == ["late", "whole"] and list(out.failures) == ["past_the_end"]
    assert "decode error" in out.failures["past_the_end"] and "355 frames" in out.failures["past_the_end"]
    assert out.tracks["whole"].shape == (50, 5) and out.tracks["late"].shape == (35, 5)
    [alone] = track_wave(wave_tracker(options, "cpu"), requests[:1], options, max_batch=1).tracks.values()
    assert box_iou(out.tracks["whole"][:, :4], alone[:, :4]).min() > 0.99


def test_track_batch_is_checked(tmp_path, tracker, weights_dir, data_dir, monkeypatch):
    with pytest.raises(ValueError, match="track_batch must be >= 1"):
        ActorOptions(store_boxes=True, tracker=tracker, init_boxes=LIFTER, track_batch=0).check()
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    video = str(data_dir / "videos" / "mtl_aqa_dive_sample.mp4")
    args = ["--videos", video, "--out", str(tmp_path / "t.h5"), "--cpu", "--boxes", "--init-box", "1,2,30,40"]
    result = CliRunner().invoke(extract_cli, [*args, "--track-batch", "0"])
    assert result.exit_code == 2 and "--track-batch" in result.output
