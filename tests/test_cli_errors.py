"""Every CLI turns expected errors into one or two lines and a non-zero exit (``--debug``: the traceback), and
refuses bad options before loading data (issue #15)."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from aqa_pipeline.cli.fit import main as fit_main
from aqa_pipeline.cli.import_features import main as import_main
from aqa_pipeline.cli.manifest import main as manifest_main
from aqa_pipeline.cli.store import main as store_main
from aqa_pipeline.store import Feature, FeatureStore, StoreError, StoreWriter
from aqa_pipeline.store.schema import shards_dir
from aqa_pipeline.synth import write_synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "synth.h5"
    return write_synthetic_store(path, kind="pooled", n_train=40, n_test=0, dim=8, length=(4, 6))


@pytest.fixture
def garbage_store(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"not an hdf5 file")
    return path


def _one_line_error(result, *fragments: str) -> str:
    """The result failed with a short message (no traceback) that holds every fragment."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    message = "\n".join(lines[-2:])
    for fragment in fragments:
        assert fragment in message, result.output
    return message


# -- the shared helper -----------------------------------------------------------------------------------------
def test_store_errors_are_one_line_and_debug_shows_the_traceback(garbage_store, tmp_path):
    args = ["--head", "ridge", str(garbage_store), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(fit_main, args)
    message = _one_line_error(result, "unreadable index file", "--debug")
    assert message.startswith("Error:") and len(message.splitlines()) == 2
    debug = CliRunner().invoke(fit_main, [*args, "--debug"])
    assert isinstance(debug.exception, StoreError)


def test_misspelt_options_get_a_suggestion(store, tmp_path):
    result = CliRunner().invoke(fit_main, ["--head", "ridge", str(store), "--ouT", str(tmp_path)])
    assert result.exit_code == 2 and "Did you mean" in result.output and "'--out'" in result.output


# -- aqa-fit options: checked before the store is read ----------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "setting", "fragments"),
    [
        ("gdlt", "epochs=abc", ("option epochs='abc'", "expected an integer, got text")),
        ("gdlt", "lr=fast", ("option lr='fast'", "expected a number")),
        ("mlp", "epochs=0", ("option epochs=0", "must be ≥ 1")),
        ("mlp", "epochs=-1", ("option epochs=-1", "must be ≥ 1")),
        ("mlp", "epoch=3", ("unknown option 'epoch'", "did you mean 'epochs'")),
        ("mlp", "dropout=1.5", ("option dropout=1.5", "must be < 1")),
        ("svr", "inner_cv=1", ("option inner_cv=1", "must be ≥ 2")),
        ("ridge", "pooling=median", ("option pooling='median'", "expected one of")),
    ],
)
def test_bad_head_options_are_refused_before_loading(garbage_store, tmp_path, head, setting, fragments):
    args = ["--head", head, str(garbage_store), "--out", str(tmp_path / "run"), "--set", setting]
    _one_line_error(CliRunner().invoke(fit_main, args), *fragments)


@pytest.mark.parametrize(
    ("flag", "value"), [("--cv", "0"), ("--cv", "1"), ("--seeds", "0"), ("--val-fraction", "-0.5")]
)
def test_out_of_range_protocol_flags_are_refused(store, tmp_path, flag, value):
    result = CliRunner().invoke(
        fit_main, ["--head", "ridge", str(store), "--out", str(tmp_path), flag, value]
    )
    assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"cv": 0}, "cv=0: cross-validation needs"),
        ({"seeds": []}, "seeds=[]: expected a non-empty list"),
        ({"val_fraction": -0.5}, "val_fraction=-0.5"),
        ({"cvv": 5}, "unknown config keys ['cvv']"),
    ],
)
def test_config_files_are_checked_like_flags(garbage_store, tmp_path, config, fragment):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"head": "ridge", **config}))
    args = [str(garbage_store), "--config", str(path), "--out", str(tmp_path / "run")]
    _one_line_error(CliRunner().invoke(fit_main, args), fragment)


def test_a_constant_target_is_refused(tmp_path):
    path = tmp_path / "constant.h5"
    prov = {"encoder": "e", "preset": "p", "dim": 4}
    with StoreWriter(path, {"x": prov}, dataset="toy") as writer:
        for i in range(12):
            writer.write(
                f"v{i}", {"x": Feature(np.full((3, 4), i, np.float32), np.arange(3))}, {"score": 7.0}
            )
            writer._file["videos"][f"v{i}"].attrs["split"] = "train"
    result = CliRunner().invoke(fit_main, ["--head", "ridge", str(path), "--out", str(tmp_path / "run")])
    _one_line_error(result, "target 'score' is constant (7) over all 12 train videos")


def test_nan_predictions_are_refused(store, tmp_path, monkeypatch):
    from aqa_pipeline.heads.base import Prediction
    from aqa_pipeline.heads.baselines import RidgeHead

    monkeypatch.setattr(RidgeHead, "predict", lambda self, data: Prediction(np.full(len(data.ids), np.nan)))
    result = CliRunner().invoke(
        fit_main, ["--head", "ridge", str(store), "--cv", "2", "--out", str(tmp_path)]
    )
    _one_line_error(result, "head 'ridge' predicted NaN/inf for", "fold0, seed 0")
    assert not (tmp_path / "metrics.json").exists()


# -- aqa-import ------------------------------------------------------------------------------------------------
def test_import_reports_empty_and_string_files_and_goes_on(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "1.npy", np.ones((5, 1024), np.float16))
    (folder / "5.npy").write_bytes(b"")
    np.save(folder / "3.npy", np.array([["a", "b"]]))
    out = tmp_path / "fisv.h5"
    result = CliRunner().invoke(
        import_main,
        ["--dataset", "fis-v", "--features-dir", str(folder), "--out", str(out), "--split", "train"],
    )
    assert result.exit_code == 0, result.output
    assert "rejected 2," in result.output and "dtype <U1 is not numeric" in result.output
    assert "5.npy: unreadable" in result.output
    assert FeatureStore(out).video_ids() == ["1"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [(["--kind", "../../x"], "invalid feature kind '../../x'"), ([], "is not a feature store; refusing")],
)
def test_import_refuses_paths_outside_or_over_other_files(tmp_path, extra, fragment):
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "1.npy", np.ones((5, 1024), np.float16))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"a video")
    out = tmp_path / "deep" / "store.h5" if extra else video
    args = ["--dataset", "fis-v", "--features-dir", str(folder), "--out", str(out), *extra]
    _one_line_error(CliRunner().invoke(import_main, args), fragment)
    assert video.read_bytes() == b"a video" and not list(tmp_path.rglob("*.h5*"))


# -- aqa-manifest: annotation pickles --------------------------------------------------------------------------
class _Exploit:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_annotation_pickles_may_not_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "mtl-aqa"
    folder.mkdir()
    (folder / "final_annotations_dict_with_dive_number.pkl").write_bytes(pickle.dumps({"x": _Exploit()}))
    for name in ("train_split_0.pkl", "test_split_0.pkl"):
        (folder / name).write_bytes(pickle.dumps([(1, 1)]))
    args = ["build", "--dataset", "mtl-aqa", "--annotations", str(folder), "--out", str(tmp_path / "m.csv")]
    _one_line_error(CliRunner().invoke(manifest_main, args), "refers to builtins.exec")
    assert not (tmp_path / "PWNED").exists()


def test_annotation_pickles_of_plain_data_and_numpy_load():
    from aqa_pipeline.safe_pickle import load_annotation_pickle

    payload = {("a", 1): {"score": np.float64(3.5), "frames": np.arange(3), "tags": [1, "x", (2.0,)]}}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.pkl"
        path.write_bytes(pickle.dumps(payload))
        loaded = load_annotation_pickle(path)
    assert loaded[("a", 1)]["score"] == 3.5 and loaded[("a", 1)]["frames"].tolist() == [0, 1, 2]


# -- aqa-store --------------------------------------------------------------------------------------------------
def test_aqa_store_check_repair_info(tmp_path):
    path = write_synthetic_store(tmp_path / "s.h5", kind="pooled", n_train=6, n_test=2, dim=8, length=(4, 6))
    ok = CliRunner().invoke(store_main, ["check", str(path)])
    assert ok.exit_code == 0 and ok.output.strip().endswith("ok")
    info = CliRunner().invoke(store_main, ["info", str(path)])
    assert info.exit_code == 0 and "synth: 8 videos, dim 8" in info.output and "train 6" in info.output
    shard = next(shards_dir(path).glob("*.h5"))
    import h5py

    with h5py.File(shard, "r") as handle:
        offset = handle["videos/pooled_0003/synth/data"].id.get_offset()
    with open(shard, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xde\xad\xbe\xef")
    bad = CliRunner().invoke(store_main, ["check", str(path)])
    assert bad.exit_code == 1 and "video 'pooled_0003': synth: checksum mismatch" in bad.output
    repaired = CliRunner().invoke(store_main, ["repair", str(path)])
    assert repaired.exit_code == 0 and "dropped corrupt videos ['pooled_0003']" in repaired.output
    assert "pooled_0003" not in FeatureStore(path).video_ids()
    missing = CliRunner().invoke(store_main, ["info", str(tmp_path / "absent.h5")])
    _one_line_error(missing, "no feature store at")


def test_engine_ray_without_ray_is_one_line_before_any_work(garbage_store, tmp_path, monkeypatch):
    """Without the ray extra, both CLIs say how to install it, before the store or the encoder is opened."""
    from aqa_pipeline.cli.extract import main as extract_main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    fit = CliRunner().invoke(
        fit_main, [str(garbage_store), "--head", "ridge", "--engine", "ray", "--out", str(tmp_path / "r")]
    )
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    extract = CliRunner().invoke(
        extract_main, ["--videos", str(video), "--out", str(tmp_path / "f.h5"), "--engine", "ray"]
    )
    for result in (fit, extract):
        assert result.exit_code == 1 and "needs Ray: pip install 'aqa-pipeline[ray]'" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "f.h5.shards").exists() and not (tmp_path / "r").exists()
