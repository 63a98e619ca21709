"""The CPU-friendly attention and dropout (heads/layers.py) compute what torch's do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aqa_pipeline.heads.layers import BYTE_LEVELS, Attention, FastDropout

torch.set_num_threads(1)


def test_attention_is_torch_multihead_attention_with_the_same_weights():
    torch.manual_seed(0)
    ours, reference = (
        Attention(32, 4, dropout=0.3).eval(),
        nn.MultiheadAttention(32, 4, 0.3, batch_first=True),
    )
    reference.eval().load_state_dict(ours.state_dict())  # same names and shapes both ways
    ours.load_state_dict(reference.state_dict())
    query, memory = torch.randn(3, 5, 32), torch.randn(3, 9, 32)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 6:] = True
    out, weights = ours(query, memory, memory, key_padding_mask=padding, need_weights=True)
    expected, expected_weights = reference(query, memory, memory, key_padding_mask=padding, need_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    assert torch.all(weights[1, :, 6:] == 0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
def test_fast_dropout_drops_the_rounded_rate_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(200, 1000, requires_grad=True)
    out = FastDropout(p).train()(x)
    keep = round((1 - p) * BYTE_LEVELS) / BYTE_LEVELS
    assert abs(p - (1 - keep)) <= 1 / BYTE_LEVELS
    assert (out == 0).float().mean().item() == pytest.approx(1 - keep, abs=0.005)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # the gradient goes through the kept elements only


def test_fast_dropout_is_the_identity_in_evaluation_and_differs_between_draws():
    x = torch.randn(64, 64)
    assert FastDropout(0.7).eval()(x) is x
    layer = FastDropout(0.5).train()
    assert not torch.equal(layer(x), layer(x))
