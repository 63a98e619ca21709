"""Neural heads train and predict with subnormal floats flushed to zero (heads/base.py: SubnormalsFlushed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from aqa_pipeline.heads.base import SubnormalsFlushed
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import synthetic_sequence_data

SUBNORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


def flushed() -> bool:
    """Whether this thread now reads a subnormal input as zero."""
    return bool((torch.tensor([SUBNORMAL]) * 1.0).item() == 0.0)


@pytest.fixture(autouse=True)
def torch_default():
    """An earlier test may have run aqa-fit in this process (for_this_process): start from torch's default."""
    process_wide, was_flushed = SubnormalsFlushed.process_wide, flushed()
    SubnormalsFlushed.process_wide = False
    torch.set_flush_denormal(False)
    yield
    SubnormalsFlushed.process_wide = process_wide
    torch.set_flush_denormal(was_flushed)


def test_fit_and_predict_flush_subnormals_and_then_put_the_flag_back(monkeypatch):
    head_cls = get_head("mlp")
    seen = {"loss": [], "predict": []}
    loss, predict_batch = head_cls.loss, head_cls.predict_batch

    def spy_loss(self, model, batch):
        seen["loss"].append(flushed())
        return loss(self, model, batch)

    def spy_predict(self, model, batch):
        seen["predict"].append(flushed())
        return predict_batch(self, model, batch)

    monkeypatch.setattr(head_cls, "loss", spy_loss)
    monkeypatch.setattr(head_cls, "predict_batch", spy_predict)
    data = synthetic_sequence_data("pooled", n=24, dim=8, length=(4, 6))
    val = synthetic_sequence_data("pooled", n=8, seed=1, dim=8, length=(4, 6))
    head = head_cls(hidden=[8], epochs=3, eval_every=1, batch_size=8)
    assert not flushed()
    head.fit(data, val, progress=False)
    # validation after epoch 1 predicts inside the fit: epochs 2 and 3 still train flushed
    assert len(seen["loss"]) == 9 and all(seen["loss"]) and all(seen["predict"])
    assert not flushed()
    head.predict(val)
    assert all(seen["predict"]) and not flushed()


def test_for_this_process_flushes_in_every_torch_thread_and_stays_on():
    """Set before torch's intra-op threads start, they inherit it: a 2-thread product of subnormals is all zero."""
    code = (
        "import torch\n"
        "from aqa_pipeline.heads.base import SubnormalsFlushed\n"
        "from aqa_pipeline.heads.registry import get_head\n"
        "from aqa_pipeline.synth import synthetic_sequence_data\n"
        "SubnormalsFlushed.for_this_process()\n"
        "torch.set_num_threads(2)\n"
        "get_head('mlp')(hidden=[8], epochs=1).fit(synthetic_sequence_data('pooled', n=16, dim=8), progress=False)\n"
        f"print(int((torch.full((4_000_000,), {SUBNORMAL}) * 1.0).count_nonzero()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "0"


def test_the_block_nests():
    with SubnormalsFlushed():
        with SubnormalsFlushed():
            assert flushed()
        assert flushed()
    assert not flushed()
