"""Store integrity under interruption, concurrency, bad names, a full disk and bit-rot (issue #15).

Each test injects the failure (an interrupt inside the append copy, a second writer, a fake full disk, flipped
bytes) and checks that the published store is still the old or the new complete state.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from aqa_pipeline.store import Feature, FeatureStore, StoreError, StoreWriter
from aqa_pipeline.store.diskspace import DiskFullError
from aqa_pipeline.store.doctor import check_store, repair_store
from aqa_pipeline.store.names import check_not_an_input
from aqa_pipeline.store.schema import shards_dir

PROV = {"encoder": "test-encoder", "preset": "test", "dim": 8, "weights_sha256": "abc", "transform": "none"}
MAPS_PROV = {"encoder": "test-encoder", "preset": "test", "dim": 4}


def _feature(length: int, seed: int = 0, dim: int = 8) -> Feature:
    rng = np.random.default_rng(seed)
    return Feature(rng.standard_normal((length, dim)).astype(np.float32), np.arange(length) * 16)


def _labels(i: int) -> dict:
    return {"score": float(i), "split": "train"}


def _write(store: Path, ids, *, shard=0, shards=1, kinds=None):
    kinds = kinds or {"i3d": PROV}
    with StoreWriter(store, kinds, dataset="toy", shard_index=shard, num_shards=shards) as writer:
        for i, vid in enumerate(ids):
            features = {k: _feature(3 + i, seed=i, dim=p["dim"]) for k, p in kinds.items()}
            writer.write(vid, features, _labels(i))


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


# -- appending to a finished shard ------------------------------------------------------------------------------
def test_interrupt_during_the_append_copy_keeps_the_complete_shard(tmp_path, monkeypatch):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b", "c"])

    def copy_half_then_interrupt(src, dst):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr("aqa_pipeline.store.writer.shutil.copyfile", copy_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        StoreWriter(store, {"i3d": PROV}, dataset="toy").open()
    monkeypatch.undo()
    assert FeatureStore(store).video_ids() == ["a", "b", "c"]
    assert not list(shards_dir(store).glob("*.partial*")), "the half copy is never left as a partial"
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        assert writer.done_ids() == ["a", "b", "c"]
        writer.write("d", {"i3d": _feature(4)}, _labels(3))
    assert FeatureStore(store).video_ids() == ["a", "b", "c", "d"]


def test_truncated_partial_beside_a_complete_shard_resumes_from_the_shard(tmp_path):
    """The old failure: a cut-off partial was called unreadable and an empty shard published in its place."""
    store = tmp_path / "features.h5"
    _write(store, ["a", "b", "c"])
    shard = next(shards_dir(store).glob("*.h5"))
    partial = shard.with_name(shard.name + ".partial")
    partial.write_bytes(shard.read_bytes()[:1000])
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        writer.write("d", {"i3d": _feature(4)}, _labels(3))
    assert FeatureStore(store).video_ids() == ["a", "b", "c", "d"]


def test_a_shard_is_never_replaced_by_one_with_fewer_videos(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"])
    writer = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    writer.open()
    del writer._file["videos"]["a"]  # what a damaged working copy would look like
    writer.write("c", {"i3d": _feature(5)}, _labels(2))
    writer.close()
    data = FeatureStore(store).load("i3d")
    assert data.ids == ["a", "b", "c"] and np.array_equal(data.features["i3d"][0], _feature(3, seed=0).data)


def test_a_lost_video_that_is_also_corrupt_in_the_shard_blocks_publishing(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"])
    writer = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    writer.open()
    del writer._file["videos"]["a"]
    _flip_bytes_of(store, "a")
    with pytest.raises(StoreError, match="refusing to replace .* 'a' is missing .* corrupt in the shard"):
        writer.close()
    assert FeatureStore(store).video_ids() == ["a", "b"], "the published state is untouched"


def test_another_layout_published_meanwhile_is_refused_at_close(tmp_path):
    store = tmp_path / "features.h5"
    early = StoreWriter(store, {"i3d": PROV}, dataset="toy", shard_index=0, num_shards=2)
    early.open()
    early.write("a", {"i3d": _feature(3)}, _labels(0))
    _write(store, ["b"], shard=0, shards=3)  # a concurrent run with another --num-shards finishes first
    with pytest.raises(
        StoreError, match="would write shard i3d-00000-of-00002.h5, but i3d-00000-of-00003.h5"
    ):
        early.close()
    assert FeatureStore(store).video_ids() == ["b"]


def test_two_concurrent_writers_with_other_presets_cannot_both_publish(tmp_path):
    store = tmp_path / "features.h5"
    first = StoreWriter(store, {"i3d": PROV}, dataset="toy", shard_index=0, num_shards=2)
    second = StoreWriter(store, {"i3d": {**PROV, "preset": "x"}}, dataset="toy", shard_index=1, num_shards=2)
    first.open()
    second.open()  # both pass the open-time checks: nothing is published yet
    first.write("a", {"i3d": _feature(3)}, _labels(0))
    second.write("b", {"i3d": _feature(3)}, _labels(1))
    first.close()
    with pytest.raises(StoreError, match="incompatible 'i3d' features"):
        second.close()
    assert FeatureStore(store).video_ids() == ["a"]
    with pytest.raises(StoreError, match="delete i3d-00001-of-00002.h5.partial to start over"):
        StoreWriter(store, {"i3d": PROV}, dataset="toy", shard_index=1, num_shards=2).open()


# -- --out --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["video", "hdf5"])
def test_out_refuses_an_existing_file_that_is_not_a_store(tmp_path, kind):
    target = tmp_path / ("clip.mp4" if kind == "video" else "other.h5")
    if kind == "video":
        target.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    else:
        with h5py.File(target, "w") as handle:
            handle["weights"] = np.ones(3)
    before = target.read_bytes()
    with pytest.raises(StoreError, match="is not a feature store; refusing to overwrite"):
        _write(target, ["a"])
    assert target.read_bytes() == before
    assert not shards_dir(target).exists()


def test_out_refuses_a_folder_and_an_input(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        _write(tmp_path, ["a"])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    with pytest.raises(StoreError, match="one of the input files"):
        check_not_an_input(tmp_path / "." / "clip.mp4", [tmp_path / "other.mp4", video])
    check_not_an_input(tmp_path / "features.h5", [video])  # no error


# -- stores that used to get stuck --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"shard": 0, "shards": 3}, "would write shard i3d-00000-of-00003.h5"),
        ({"kinds": {"i3d": PROV, "maps": MAPS_PROV}}, r"would write shard i3d\+maps-00000-of-00001.h5"),
    ],
)
def test_another_layout_is_refused_before_any_work(tmp_path, second, message):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"])
    kinds = second.get("kinds", {"i3d": PROV})
    writer = StoreWriter(
        store, kinds, dataset="toy", shard_index=second.get("shard", 0), num_shards=second.get("shards", 1)
    )
    with pytest.raises(StoreError, match=message):
        writer.open()
    reader = FeatureStore(store)
    assert reader.video_ids() == ["a", "b"] and reader.kinds == ["i3d"]
    _write(store, ["a", "b"], kinds={"maps": MAPS_PROV})  # a new kind on its own is what adds shards
    assert FeatureStore(store).kinds == ["i3d", "maps"]


def test_another_preset_for_one_shard_is_refused_at_open(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"], shard=0, shards=2)
    writer = StoreWriter(
        store, {"i3d": {**PROV, "preset": "other"}}, dataset="toy", shard_index=1, num_shards=2
    )
    with pytest.raises(StoreError, match=r"incompatible 'i3d' features.*preset"):
        writer.open()
    assert not list(shards_dir(store).glob("*.partial")), "refused before a partial file was started"
    _write(store, ["b"], shard=1, shards=2)
    assert FeatureStore(store).video_ids() == ["a", "b"]


def test_other_settings_for_a_finished_shard_are_refused_before_copying_it(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"])
    with pytest.raises(StoreError, match=r"i3d-00000-of-00001.h5 was written with different .*preset"):
        StoreWriter(store, {"i3d": {**PROV, "preset": "other"}}, dataset="toy").open()
    assert not list(shards_dir(store).glob("*.partial*"))


def test_a_duplicate_or_relabelled_video_fails_alone_and_the_shard_publishes(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"], shard=0, shards=2)
    with StoreWriter(store, {"i3d": PROV}, dataset="toy", shard_index=1, num_shards=2) as writer:
        with pytest.raises(StoreError, match=r"video 'a' feature 'i3d' is already in .*i3d-00000-of-00002"):
            writer.write("a", {"i3d": _feature(3)}, _labels(0))
        writer.write("c", {"i3d": _feature(3)}, _labels(2))
    with StoreWriter(store, {"maps": MAPS_PROV}, dataset="toy") as writer:
        with pytest.raises(StoreError, match="video 'b': labels .* differ"):
            writer.write("b", {"maps": _feature(3, dim=4)}, {"score": 99.0, "split": "train"})
        writer.write("a", {"maps": _feature(3, dim=4)}, _labels(0))
    reader = FeatureStore(store)
    assert reader.video_ids() == ["a", "b", "c"] and reader.video_ids(kind="maps") == ["a"]


# -- two writers ----------------------------------------------------------------------------------------------------
def test_a_second_writer_of_the_same_shard_is_refused(tmp_path):
    store = tmp_path / "features.h5"
    first = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    first.open()
    first.write("a", {"i3d": _feature(3)}, _labels(0))
    with pytest.raises(StoreError, match=rf"being written by another process \(pid {os.getpid()}\)"):
        StoreWriter(store, {"i3d": PROV}, dataset="toy").open()
    first.close()
    _write(store, ["b"])  # after the first finished, the shard is free again (and resumes)
    assert FeatureStore(store).video_ids() == ["a", "b"]


SECOND_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from aqa_pipeline.store import Feature, StoreError, StoreWriter
    prov = {"encoder": "test-encoder", "preset": "test", "dim": 8, "weights_sha256": "abc", "transform": "none"}
    try:
        with StoreWriter(sys.argv[1], {"i3d": prov}, dataset="toy") as writer:
            writer.write("intruder", {"i3d": Feature(np.ones((3, 8), np.float32), np.arange(3))}, {})
    except StoreError as error:
        print("refused:", error)
    """
)


def test_a_second_writer_process_is_refused_with_hdf5_file_locking_off(tmp_path):
    store = tmp_path / "features.h5"
    first = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    first.open()
    first.write("a", {"i3d": _feature(3)}, _labels(0))
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE", "PYTHONPATH": str(Path(__file__).parents[1])}
    second = subprocess.run(
        [sys.executable, "-c", SECOND_WRITER, str(store)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "refused:" in second.stdout and "being written by another process" in second.stdout, second.stderr
    first.write("b", {"i3d": _feature(4)}, _labels(1))
    first.close()
    reader = FeatureStore(store)
    assert reader.video_ids() == ["a", "b"]
    assert len(reader.load("i3d")) == 2


# -- names ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [".", "..", "", "a/b", " a", "a\n"])
def test_an_odd_video_id_fails_alone(tmp_path, bad_id):
    store = tmp_path / "features.h5"
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        with pytest.raises(StoreError, match="invalid video id"):
            writer.write(bad_id, {"i3d": _feature(3)}, _labels(0))
        writer.write("good", {"i3d": _feature(3)}, _labels(0))
    _write(store, ["next"])  # the next run of the store works too
    assert FeatureStore(store).video_ids() == ["good", "next"]


@pytest.mark.parametrize("kind", ["../../x", "a/b", "i3d+maps", "", ".hidden"])
def test_a_kind_that_is_not_a_plain_name_is_refused(tmp_path, kind):
    store = tmp_path / "store" / "features.h5"
    with pytest.raises(StoreError, match="invalid feature kind"):
        StoreWriter(store, {kind: PROV}, dataset="toy")
    assert not list(tmp_path.rglob("*.h5*"))


def test_non_numeric_features_are_refused(tmp_path):
    with StoreWriter(tmp_path / "f.h5", {"i3d": PROV}, dataset="toy") as writer:
        with pytest.raises(StoreError, match="dtype <U1 is not numeric"):
            writer.write("a", {"i3d": Feature(np.full((3, 8), "x"), np.arange(3))}, _labels(0))


# -- full disk and leftovers ----------------------------------------------------------------------------------------
def test_a_full_disk_stops_the_run_and_keeps_what_was_written(tmp_path, monkeypatch):
    store = tmp_path / "features.h5"
    usage = collections.namedtuple("usage", "total used free")
    writer = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    with pytest.raises(DiskFullError, match="not enough disk space .* video 'b'"):
        with writer:
            writer.write("a", {"i3d": _feature(3)}, _labels(0))
            monkeypatch.setattr("aqa_pipeline.store.diskspace.shutil.disk_usage", lambda _: usage(1, 1, 1000))
            writer.write("b", {"i3d": _feature(3)}, _labels(1))
    monkeypatch.undo()
    shard_files = _files(shards_dir(store))
    assert {n for n in shard_files if not n.endswith(".lock")} == {"i3d-00000-of-00001.h5.partial"}
    assert not store.exists() and not list(tmp_path.glob(".*tmp*"))
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:  # space freed: the run resumes
        assert writer.done_ids() == ["a"]
        writer.write("b", {"i3d": _feature(3)}, _labels(1))
    assert FeatureStore(store).video_ids() == ["a", "b"]


def test_a_failed_index_write_leaves_no_temp_file(tmp_path, monkeypatch):
    store = tmp_path / "features.h5"
    _write(store, ["a"])

    def full(tmp, *_):
        Path(tmp).write_bytes(b"half an index")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aqa_pipeline.store.index._write_index_file", full)
    with pytest.raises(OSError, match="No space left"):
        _write(store, ["b"], shard=0, shards=1)
    monkeypatch.undo()
    assert not list(tmp_path.glob(".features.h5.tmp-*"))
    assert FeatureStore(store).video_ids() == ["a"], "the old index still answers"
    assert not check_store(store).ok  # the shard now holds b: the index is out of date
    repair_store(store)
    assert FeatureStore(store).video_ids() == ["a", "b"]


def test_leftovers_of_killed_runs_are_cleaned(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"])
    stale_index = tmp_path / ".features.h5.tmp-99999"
    stale_copy = shards_dir(store) / "i3d-00000-of-00001.h5.partial.copy-99999"
    stale_index.write_bytes(b"x")
    stale_copy.write_bytes(b"x")
    assert {p.name for p in check_store(store).leftovers} == {stale_index.name, stale_copy.name}
    _write(store, ["b"])
    assert not stale_index.exists() and not stale_copy.exists()


# -- bit-rot --------------------------------------------------------------------------------------------------------
def _flip_bytes_of(store: Path, video_id: str) -> None:
    shard = next(shards_dir(store).glob("*.h5"))
    with h5py.File(shard, "r") as handle:
        offset = handle[f"videos/{video_id}/i3d/data"].id.get_offset()
    with open(shard, "r+b") as handle:
        handle.seek(offset + 5)
        byte = handle.read(1)
        handle.seek(offset + 5)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_corrupted_bytes_are_detected_on_read_and_repaired(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b", "c"])
    _flip_bytes_of(store, "b")
    with pytest.raises(StoreError, match=r"video 'b', feature 'i3d': checksum mismatch"):
        FeatureStore(store).load("i3d")
    assert FeatureStore(store).load("i3d", ids=["a", "c"]).ids == ["a", "c"]
    health = check_store(store)
    assert not health.ok and list(health.shards[0].corrupt) == ["b"]
    actions = repair_store(store)
    assert any("dropped corrupt videos ['b']" in line for line in actions)
    assert FeatureStore(store).load("i3d").ids == ["a", "c"] and check_store(store).ok


def test_repair_moves_an_unreadable_shard_aside(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"], shard=0, shards=2)
    _write(store, ["b"], shard=1, shards=2)
    broken = shards_dir(store) / "i3d-00001-of-00002.h5"
    broken.write_bytes(broken.read_bytes()[:500])
    assert "unreadable" in "\n".join(check_store(store).lines())
    repair_store(store)
    assert FeatureStore(store).load("i3d").ids == ["a"] and check_store(store).ok


HOLD_OPEN = (
    "import sys, time, h5py; handle = h5py.File(sys.argv[1], 'r+'); print('open', flush=True); time.sleep(30)"
)


@pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE", reason="needs HDF5's own file locking"
)
def test_a_shard_held_open_elsewhere_is_reported_as_locked_not_corrupt(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"])
    shard = next(shards_dir(store).glob("*.h5"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(shard)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="is locked by another process"):
            FeatureStore(store).load("i3d")
    finally:
        holder.kill()
        holder.wait()
