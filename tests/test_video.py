"""Decoding (errors name the file, each source frame decoded once) and the papers' sampling presets."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from aqa_pipeline.video.decode import VideoDecodeError, probe, read_frames, read_windows
from aqa_pipeline.video.presets import PRESETS, get_preset


def write_counter_video(path, num_frames: int, size=(64, 48), fps: float = 25.0):
    """A video whose frame i is uniformly grey level 5*i (frames differ, so a routing mix-up shows)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), (5 * i) % 250, np.uint8))
    writer.release()
    return path


# ------------------------------------------------------------------------------------------------- presets


def test_mtl_aqa_clip_tables_core_and_musdl():
    assert get_preset("mtl-aqa").clip_starts == (0, 10, 20, 30, 40, 50, 60, 70, 80, 86)
    assert get_preset("mtl-aqa-musdl").clip_starts == (0, 10, 20, 30, 40, 50, 60, 70, 80, 87)
    plan = get_preset("mtl-aqa-musdl").plan(103, 25.0)
    assert (
        plan.clip_frames().shape == (10, 16) and plan.clip_frames()[-1, -1] == 102 and plan.padded_frames == 0
    )


def test_tpt_and_finediving_tables():
    tpt = get_preset("tpt").plan(103, 25.0)
    assert (
        tpt.clip_len == 8 and tpt.clip_starts == tuple(range(0, 100, 5)) and tpt.clip_frames()[-1, -1] == 102
    )
    fine = get_preset("finediving").plan(200, 25.0)
    assert fine.clip_starts == (0, 10, 20, 30, 40, 50, 60, 70, 80) and len(fine.frame_indices) == 96
    assert fine.frame_indices[0] == 0 and fine.frame_indices[-1] == 199  # linspace over the whole dive


def test_short_sample_is_padded_never_dropped():
    plan = get_preset("mtl-aqa").plan(21, 10.0)
    assert plan.padded_frames == 82 and len(plan.frame_indices) == 103
    assert (plan.frame_indices[21:] == 20).all()
    looped = get_preset("mtl-aqa").with_pad("loop").plan(21, 10.0)
    assert looped.frame_indices[21:42].tolist() == list(range(21))
    tiny = get_preset("gdlt").plan(20, 25.0)
    assert tiny.clip_starts == (0,) and tiny.padded_frames == 12


def test_gdlt_trims_remainder_evenly_and_action_net_subsamples():
    gdlt = get_preset("gdlt").plan(100, 25.0)  # 3 clips of 32, remainder 4 → 2 dropped at each end
    assert gdlt.clip_starts == (0, 32, 64) and gdlt.frame_indices[0] == 2 and gdlt.frame_indices[-1] == 97
    action = get_preset("action-net").plan(
        250, 25.0
    )  # stride 5 → frames 4, 9, ... (50), 3 clips, tail dropped
    assert action.frame_indices[:3].tolist() == [4, 9, 14] and action.clip_starts == (0, 16, 32)


def test_windows_follow_each_papers_loader():
    assert get_preset("mtl-aqa").window(7377, 7462, 20000) == (7462 - 103, 7462)  # CoRe: [end-103, end)
    assert get_preset("finediving").window(100, 150, 1000) == (100, 151)
    assert get_preset("gdlt").window(None, None, 500) == (0, 500)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_transform_outputs_the_model_input_size(name):
    preset = get_preset(name)
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    out = preset.transform_frame(frame)
    assert out.shape == (*preset.output_hw, 3) and out.dtype == np.uint8
    assert preset.describe()["name"] == name and "clip_starts" in preset.describe()


def test_normalisation_override_and_validation():
    preset = get_preset("mtl-aqa")
    assert (
        preset.normalisation == "minus1_1" and preset.with_normalisation("paper").normalisation == "imagenet"
    )
    with pytest.raises(ValueError, match="normalisation"):
        dataclasses.replace(preset, normalisation="zscore")


# ------------------------------------------------------------------------------------------------- decoding


def test_probe_and_read_real_dive(data_dir):
    path = data_dir / "videos" / "mtl_aqa_dive_sample.mp4"
    info = probe(path)
    assert (info.num_frames, info.height, info.width) == (21, 280, 500) and abs(info.fps - 10) < 0.5
    frames = read_frames(path, [3, 0, 3])
    assert frames.shape == (3, 280, 500, 3) and frames.dtype == np.uint8 and (frames[0] == frames[2]).all()


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="nothere.mp4"):
        probe(tmp_path / "nothere.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        probe(corrupt)


def test_out_of_range_frames_are_a_clear_error(tmp_path):
    path = write_counter_video(tmp_path / "short.mp4", 10)
    with pytest.raises(VideoDecodeError, match=r"short.mp4.*has 10 frames"):
        read_frames(path, [5, 12])


def test_windows_of_one_source_decode_each_frame_once(tmp_path):
    path = write_counter_video(tmp_path / "event.mp4", 40)
    windows = [list(range(20, 30)), list(range(0, 12)), list(range(8, 24)), [35, 35, 36]]
    transformed = []

    def transform(frame):
        transformed.append(int(frame.mean()))
        return frame[:8, :8]

    served = dict(read_windows(path, windows, transform))
    assert sorted(served) == [0, 1, 2, 3]
    assert len(transformed) == len(set().union(*map(set, windows)))  # every needed frame decoded exactly once
    for position, window in enumerate(windows):
        np.testing.assert_array_equal(served[position], read_frames(path, window)[:, :8, :8])
