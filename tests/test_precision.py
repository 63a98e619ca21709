"""precision="bf16": every neural head trains its batches' forward passes under bfloat16 autocast, and scores
(validation, prediction) in float32, so that near-equal scores keep their order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tune import _clips

from aqa_pipeline.heads.base import TorchHead
from aqa_pipeline.heads.registry import get_head, head_names

torch.set_num_threads(1)
NEURAL_HEADS = [
    name for name in head_names() if issubclass(get_head(name), TorchHead) and get_head(name).search_space
]


@pytest.mark.parametrize("name", NEURAL_HEADS)
def test_bf16_trains_under_autocast_and_scores_in_fp32(name, monkeypatch):
    head_cls = get_head(name)
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
    head = head_cls(epochs=1, precision="bf16")
    train, val = _clips(12), _clips(6, seed=1)
    history = head.fit(train, val, progress=False)
    assert seen["loss"] and set(seen["loss"]) == {(True, torch.bfloat16)}
    assert seen["predict"] and not any(seen["predict"])
    assert np.isfinite(history.train_loss[0])
    y = head.predict(val).y
    assert y.dtype == np.float32 and np.isfinite(y).all()


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
