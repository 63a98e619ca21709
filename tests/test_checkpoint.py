"""model.pt is plain tensors and data: every head round-trips through it, and a crafted file runs no code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.baselines import FittedPooledModel
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.checkpoint import (
    CheckpointError,
    from_plain,
    load_checkpoint,
    save_checkpoint,
    to_plain,
)
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.run import FitConfig, predict_store, run


class _Payload:
    """What a crafted checkpoint carries: unpickling it would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_model_pt_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "model.pt", "wb") as handle:
        pickle.dump({"head": "ridge", "state": _Payload(str(marker))}, handle)
    torch.save({"head": "ridge", "state": _Payload(str(marker))}, tmp_path / "zip.pt")
    for name in ("model.pt", "zip.pt"):
        with pytest.raises(CheckpointError, match="not a safe aqa-pipeline checkpoint"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError):
        predict_store(tmp_path, tmp_path / "any.h5")
    assert not marker.exists()


def test_plain_round_trip_keeps_arrays_sequences_and_refuses_objects(tmp_path):
    data = SequenceData(
        ["a", "b"], [np.ones((3, 2), np.float16), np.zeros((1, 2), np.float16)], np.array([0.1, 0.9])
    )
    payload = {"data": data, "bounds": np.arange(4), "seed": np.int64(3), "names": np.array(["x", "y"])}
    save_checkpoint(payload, tmp_path / "m.pt")
    back = from_plain(load_checkpoint(tmp_path / "m.pt"), to_working=abs)
    assert back["data"].ids == ["a", "b"] and back["data"].x[0].dtype == np.float16
    assert back["data"].to_working is abs and back["seed"] == 3 and back["names"].tolist() == ["x", "y"]
    np.testing.assert_array_equal(back["bounds"], np.arange(4))
    with pytest.raises(TypeError, match="cannot save function"):
        to_plain({"callback": lambda: None})


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_plain_svr_predicts_as_sklearn_does(kernel):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)) * 3 + 1, rng.normal(size=40)
    pipeline = make_pipeline(StandardScaler(), SVR(kernel=kernel, C=1.0)).fit(x, y)
    plain = FittedPooledModel.from_pipeline(pipeline)
    np.testing.assert_allclose(plain.predict(x), pipeline.predict(x), atol=1e-10)


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "synth.h5"
    return write_synthetic_store(path, kind="pooled", n_train=40, n_test=12, dim=8, length=(4, 8))


@pytest.mark.parametrize("head", ["ridge", "svr", "mlp", "usdl", "gdlt", "weight-score", "core", "tpt"])
def test_every_head_predicts_the_same_after_a_weights_only_reload(head, synthetic_store, tmp_path):
    options = {} if head in ("ridge", "svr") else {"epochs": 1}
    config = FitConfig(head=head, head_options=options, progress=False)
    result = run(synthetic_store, config, tmp_path / head)
    saved = {p.id: p.prediction for p in result.predictions if p.split == "test"}
    again = {row.id: row.prediction for row in predict_store(tmp_path / head, synthetic_store, "test")}
    assert again.keys() == saved.keys()
    np.testing.assert_allclose([again[k] for k in saved], list(saved.values()), rtol=1e-5, atol=1e-6)


def test_aqa_fit_predict_runs_the_restored_model_on_the_device_asked(synthetic_store, tmp_path, monkeypatch):
    """``--predict ... --device`` reaches every member of a restored seed ensemble (the meta device stands in for
    a GPU: parameters land there, and a spy sees the device the CLI passed)."""
    from click.testing import CliRunner

    from aqa_pipeline.cli.fit import main as fit_cli
    from aqa_pipeline.heads.base import TorchHead
    from aqa_pipeline.heads.ensemble import restore_head
    from aqa_pipeline.heads.registry import get_head

    run(
        synthetic_store,
        FitConfig(head="mlp", head_options={"epochs": 1}, ensemble=2, progress=False),
        tmp_path / "r",
    )
    state = load_checkpoint(tmp_path / "r" / "model.pt")["state"]
    restored = restore_head(get_head("mlp"), from_plain(state)).to_device("meta")
    assert {p.device.type for member in restored.members for p in member.model.parameters()} == {"meta"}
    seen = []
    original = TorchHead.to_device
    monkeypatch.setattr(
        TorchHead, "to_device", lambda self, device: seen.append(device) or original(self, device)
    )
    args = [
        "--predict",
        str(tmp_path / "r"),
        str(synthetic_store),
        "--out",
        str(tmp_path / "p"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(fit_cli, args)
    assert result.exit_code == 0, result.output
    assert seen == ["cpu", "cpu"]  # both members
