"""precision="bf16": every neural head trains its batches' forward passes under bfloat16 autocast, and scores
(validation, prediction) in float32, so that near-equal scores keep their order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tune import _clips

from aqa_pipeline.heads.base import TorchHead
from aqa_pipeline.heads.fspn import synthetic_actor_data
from aqa_pipeline.heads.registry import get_head, head_names
from aqa_pipeline.heads.tsa import synthetic_tube_data
from aqa_pipeline.synth import synthetic_sequence_data

torch.set_num_threads(1)
# the heads that train on plain clip features; the tube and actor heads get their own data below
NEURAL_HEADS = [
    name for name in head_names() if issubclass(get_head(name), TorchHead) and get_head(name).search_space
]


def _assert_bf16_training(head_cls, train, val, monkeypatch, **options):
    """Fit one epoch in bf16, spying on where autocast is on: in every loss, in no prediction."""
    seen = {"loss": [], "predict": []}
    loss, predict_batch = head_cls.loss, head_cls.predict_batch

    def spied_loss(self, model, batch):
        seen["loss"].append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return loss(self, model, batch)

    def spied_predict(self, model, batch):
        seen["predict"].append(torch.is_autocast_enabled("cpu"))
        return predict_batch(self, model, batch)

    monkeypatch.setattr(head_cls, "loss", spied_loss)
    monkeypatch.setattr(head_cls, "predict_batch", spied_predict)
    head = head_cls(**{"epochs": 1, **options, "precision": "bf16"})
    history = head.fit(train, val, progress=False)
    assert len(seen["loss"]) > 1 and set(seen["loss"]) == {(True, torch.bfloat16)}  # one autocast, reused
    assert seen["predict"] and not any(seen["predict"])
    assert np.isfinite(history.train_loss[0])
    y = head.predict(val).y
    assert y.dtype == np.float32 and np.isfinite(y).all()


@pytest.mark.parametrize("name", NEURAL_HEADS)
def test_bf16_trains_under_autocast_and_scores_in_fp32(name, monkeypatch):
    _assert_bf16_training(get_head(name), _clips(12), _clips(6, seed=1), monkeypatch, batch_size=4)


@pytest.mark.parametrize("name", ["tsa", "nl-net"])
@pytest.mark.parametrize("form", ["paper", "code"])
def test_the_tube_heads_train_in_bf16(name, form, monkeypatch):
    data = synthetic_tube_data(n=8, clips=(3, 6), seed=3)
    light = {"variant": "light", "output": "regression", "batch_size": 4, "lr": 1e-3, "form": form}
    _assert_bf16_training(get_head(name), data, data, monkeypatch, **light)


@pytest.mark.parametrize("graph", ["temporal", "feature"])
def test_action_nets_two_streams_train_in_bf16(graph, monkeypatch):
    data = synthetic_sequence_data("pooled", n=8, seed=0, dim=8)
    rng = np.random.default_rng(0)
    data.extra["static"] = [rng.standard_normal((len(x) + 5, 12)).astype(np.float32) for x in data.x]
    small = {"embed_dim": 16, "attention_hidden": 16, "fusion_hidden": 16, "graph": graph}
    options = {**small, "window": 10, "extra_windows": {"static": 16}, "batch_size": 4}
    _assert_bf16_training(get_head("action-net"), data, data, monkeypatch, **options)


def test_fspn_trains_in_bf16(monkeypatch):
    data = synthetic_actor_data(n=12, seed=2)
    small = {"size": "small", "dims": (16, 32, 64), "heads": 2, "batch_size": 4, "n_exemplars": 5}
    _assert_bf16_training(get_head("fspn"), data, data, monkeypatch, **small)


def test_fp32_trains_without_autocast(monkeypatch):
    head_cls = get_head("mlp")
    enabled = []
    loss = head_cls.loss
    monkeypatch.setattr(
        head_cls,
        "loss",
        lambda self, model, batch: (
            enabled.append(torch.is_autocast_enabled("cpu")) or loss(self, model, batch)
        ),
    )
    head_cls(epochs=1).fit(_clips(12), progress=False)
    assert enabled and not any(enabled)


def test_an_unknown_precision_is_refused_before_any_data_loads():
    with pytest.raises(ValueError, match="precision"):
        get_head("gdlt")(precision="fp16")
