"""The feature store contract: atomic shards, resume, several writers, validation, and the real Fis-V import."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest

from aqa_pipeline.store import Feature, FeatureStore, StoreError, StoreWriter, rebuild_index
from aqa_pipeline.store.schema import shards_dir

PROV = {"encoder": "test-encoder", "preset": "test", "dim": 8, "weights_sha256": "abc", "transform": "none"}


def _feature(length: int, seed: int = 0) -> Feature:
    rng = np.random.default_rng(seed)
    return Feature(rng.standard_normal((length, 8)).astype(np.float32), np.arange(length) * 16)


def _write(store: Path, ids, *, shard=0, shards=1, split="train", kinds=None, kind="i3d"):
    with StoreWriter(
        store, kinds or {kind: PROV}, dataset="toy", shard_index=shard, num_shards=shards
    ) as writer:
        for i, vid in enumerate(ids):
            writer.write(vid, {kind: _feature(3 + i, seed=i)}, {"score": float(i), "split": split})


def test_round_trip_across_shards(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["v1", "v2", "v10"], shard=0, shards=2)
    _write(store, ["t1", "t2"], shard=1, shards=2, split="test")
    reader = FeatureStore(store)
    assert reader.kinds == ["i3d"]
    assert reader.splits() == {"train": 3, "test": 2}
    assert reader.video_ids("train") == ["v1", "v2", "v10"]  # natural order
    data = reader.load("i3d", split="train")
    assert [len(x) for x in data.features["i3d"]] == [3, 4, 5]
    assert np.allclose(data.features["i3d"][1], _feature(4, seed=1).data)
    assert data.label("score").tolist() == [0.0, 1.0, 2.0]
    assert reader.provenance("i3d")["encoder"] == "test-encoder"
    padded, lengths = data.padded("i3d")
    assert padded.shape == (3, 5, 8) and lengths.tolist() == [3, 4, 5] and not padded[0, 3:].any()
    # Plain h5py users see every video through the index's external links.
    with h5py.File(store) as handle:
        assert handle["videos/t2/i3d/data"].shape == (4, 8)


def test_interrupted_writer_resumes_without_redoing_videos(tmp_path):
    store = tmp_path / "features.h5"
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
            writer.write("a", {"i3d": _feature(3)}, {"split": "train", "score": 1.0})
            writer.write("b", {"i3d": _feature(4)}, {"split": "train", "score": 2.0})
            raise KeyboardInterrupt
    assert not store.exists(), "an interrupted run must not publish an index"
    partials = list(shards_dir(store).glob("*.partial"))
    assert len(partials) == 1
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        assert writer.is_done("a") and writer.is_done("b") and not writer.is_done("c")
        writer.write("c", {"i3d": _feature(5)}, {"split": "train", "score": 3.0})
    assert FeatureStore(store).video_ids() == ["a", "b", "c"]
    assert not list(shards_dir(store).glob("*.partial"))


def test_partial_shard_is_invisible_to_readers(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"], shard=0, shards=2)
    writer = StoreWriter(store, {"i3d": PROV}, dataset="toy", shard_index=1, num_shards=2)
    writer.open()
    writer.write("b", {"i3d": _feature(3)}, {"split": "train", "score": 1.0})
    writer.abort()
    assert FeatureStore(store).video_ids() == ["a"]


def _write_shard_process(args):
    store, shard, ids = args
    _write(Path(store), ids, shard=shard, shards=3)


def test_several_processes_write_shards_of_one_store(tmp_path):
    store = tmp_path / "features.h5"
    jobs = [(str(store), i, [f"s{i}_{j}" for j in range(4)]) for i in range(3)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.map(_write_shard_process, jobs)
    assert len(FeatureStore(store).video_ids()) == 12


def test_adding_a_feature_kind_to_an_existing_store(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"])
    boxes_prov = {"encoder": "nanotrack", "dim": 5}
    with StoreWriter(store, {"boxes": boxes_prov}, dataset="toy") as writer:
        for vid in ("a", "b"):
            writer.write(
                vid,
                {"boxes": Feature(np.ones((6, 5), np.float32), np.arange(6))},
                {"score": 0.0 if vid == "a" else 1.0, "split": "train"},
            )
    reader = FeatureStore(store)
    assert reader.kinds == ["boxes", "i3d"]
    both = reader.load(["i3d", "boxes"], split="train")
    assert both.features["boxes"][0].shape == (6, 5) and both.features["i3d"][1].shape == (4, 8)


def test_incompatible_provenance_is_refused(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"], shard=0, shards=2)
    other = {**PROV, "encoder": "another-encoder"}
    with pytest.raises(StoreError, match="incompatible 'i3d' features.*encoder"):
        _write(store, ["b"], shard=1, shards=2, kinds={"i3d": other})


def test_resuming_with_different_settings_is_refused(tmp_path):
    store = tmp_path / "features.h5"
    writer = StoreWriter(store, {"i3d": PROV}, dataset="toy")
    writer.open()
    writer.write("a", {"i3d": _feature(3)}, {"split": "train"})
    writer.abort()
    with pytest.raises(StoreError, match="different feature settings"):
        StoreWriter(store, {"i3d": {**PROV, "preset": "other"}}, dataset="toy").open()


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (Feature(np.full((3, 8), np.nan, np.float32), np.arange(3)), "NaN/inf"),
        (Feature(np.zeros((3, 7), np.float32), np.arange(3)), r"trailing shape \(7,\)"),
        (Feature(np.zeros((3, 8), np.float32), np.arange(2)), "times has shape"),
        (Feature(np.zeros((0, 8), np.float32), np.arange(0)), "empty feature"),
    ],
)
def test_bad_features_are_refused_with_the_video_named(tmp_path, feature, message):
    with StoreWriter(tmp_path / "f.h5", {"i3d": PROV}, dataset="toy") as writer:
        writer.write("good", {"i3d": _feature(3)}, {"split": "train"})
        with pytest.raises(StoreError, match=f"video 'bad'.*{message}"):
            writer.write("bad", {"i3d": feature}, {"split": "train"})
    assert FeatureStore(tmp_path / "f.h5").video_ids() == ["good"], "earlier videos survive a rejected one"


def test_duplicate_ids_are_refused(tmp_path):
    store = tmp_path / "features.h5"
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        writer.write("a", {"i3d": _feature(3)}, {"split": "train"})
        with pytest.raises(StoreError, match="duplicate id"):
            writer.write("a", {"i3d": _feature(3)}, {"split": "train"})
    with pytest.raises(
        StoreError, match=r"would write shard i3d-00001-of-00002.h5, but i3d-00000-of-00001.h5"
    ):
        _write(store, ["a"], shard=1, shards=2)  # another shard count: refused before any work
    assert FeatureStore(store).video_ids() == ["a"]


def test_truncated_shard_is_reported_by_file_name(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a", "b"])
    shard = next(shards_dir(store).glob("*.h5"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match=f"shard .*{shard.name} is unreadable"):
        FeatureStore(store).load("i3d")
    with pytest.raises(StoreError, match=shard.name):
        rebuild_index(store)


def test_missing_or_corrupt_index(tmp_path):
    with pytest.raises(StoreError, match="no feature store"):
        FeatureStore(tmp_path / "absent.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(StoreError, match="unreadable index"):
        FeatureStore(bad)


def test_reader_errors_name_what_exists(tmp_path):
    store = tmp_path / "features.h5"
    _write(store, ["a"])
    reader = FeatureStore(store)
    with pytest.raises(StoreError, match=r"no feature kind 'vst'; it has \['i3d'\]"):
        reader.load("vst")
    with pytest.raises(StoreError, match="no videos .* split 'test'"):
        reader.load("i3d", split="test")


def test_importer_reports_imported_missing_rejected(tmp_path):
    from aqa_pipeline.manifests import Manifest, ManifestRow
    from aqa_pipeline.store.importer import import_npy_features

    rows = [
        ManifestRow(
            id=str(i),
            video=str(i),
            start_frame=None,
            end_frame=None,
            split="train",
            score=float(i),
            difficulty=None,
            action_class=None,
            subscores={"tes": float(i)},
        )
        for i in range(1, 6)
    ]
    manifest = Manifest(name="fis-v", rows=rows, subscore_names=["tes"])
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "1.npy", np.ones((5, 8), np.float16))
    np.save(folder / "2.npy", np.ones((6, 8), np.float32))
    np.save(folder / "3.npy", np.full((5, 8), np.nan, np.float32))  # NaN → rejected
    np.save(folder / "4.npy", np.ones((5, 9), np.float32))  # wrong dim → rejected
    np.save(folder / "99.npy", np.ones((5, 8), np.float32))  # no manifest row
    report = import_npy_features(
        manifest, folder, tmp_path / "f.h5", kind="vst", provenance={**PROV, "dim": 8}, progress=False
    )
    assert report.imported == ["1", "2"]
    assert report.missing == ["5"]
    assert (
        set(report.rejected) == {"3", "4"}
        and "NaN" in report.rejected["3"]
        and "(T, 8)" in report.rejected["4"]
    )
    assert report.unmatched_files == ["99"]
    data = FeatureStore(tmp_path / "f.h5").load("vst")
    assert data.ids == ["1", "2"] and data.label("tes").tolist() == [1.0, 2.0]


@pytest.mark.realdata
def test_import_of_the_real_fisv_features(tmp_path, data_dir):
    import time

    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.store.importer import import_npy_features

    folder = data_dir / "fisv" / "swintx_avg_fps25_clip32"
    report = import_npy_features(
        load_manifest("fis-v"),
        folder,
        tmp_path / "fisv.h5",
        kind="vst",
        provenance={**PROV, "dim": 1024},
        splits=("train",),
        progress=False,
    )
    assert len(report.imported) == 400 and not report.missing and not report.rejected
    store = FeatureStore(tmp_path / "fisv.h5")
    FeatureStore(tmp_path / "fisv.h5").load("vst", split="train")  # warm the page cache
    started = time.perf_counter()
    data = store.load("vst", split="train")
    seconds = time.perf_counter() - started
    assert len(data) == 400
    truth = {
        line.split()[0]: [float(v) for v in line.split()[1:3]]
        for line in (data_dir / "fisv" / "train.txt").read_text().splitlines()
        if line.strip()
    }
    for vid, features, labels in zip(data.ids, data.features["vst"], data.labels, strict=True):
        assert [labels["tes"], labels["pcs"]] == truth[vid]
        assert features.shape == np.load(folder / f"{vid}.npy", mmap_mode="r").shape
    print(f"warm load of 400 Fis-V videos: {seconds:.2f} s")
