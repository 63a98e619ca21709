"""TSA / NL-Net heads: the tube restriction, its cost, padding masks, the I3D tail, and TSA beating NL-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.heads.tsa import (
    I3DTail,
    TubeSelfAttention,
    block_flops,
    fit_mask,
    synthetic_tube_data,
    tsa_flops,
)
from aqa_pipeline.train.data import Batch, SequenceData
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)


def test_block_flops_hand_computed():
    # paper form, N=10 positions, C=4, C_i=2: θ,φ,g 3·10·4·2=240 + affinity 10·10·2=200 + aggregation 200
    # + W_z 10·2·4=80 = 720 multiply-adds = 1440 FLOPs
    assert block_flops(10, 4, 2, "paper") == 1440
    # code form (no θ/φ, inter = C): XᵀX 10·10·4=400 + g 10·4·4=160 + aggregation 400 + W_z 160 = 1120 → 2240
    assert block_flops(10, 4, form="code") == 2240
    tube = np.zeros((2, 1, 4, 4), dtype=bool)
    tube[:, :, :2, :2] = True  # 8 of 32 positions
    cost = tsa_flops(tube, 4, 2, blocks=2)
    assert cost["tube_positions"] == 8 and cost["positions"] == 32
    assert cost["tsa_flops"] == 2 * block_flops(8, 4, 2) and cost["dense_flops"] == 2 * block_flops(32, 4, 2)
    assert cost["ratio"] < 0.25


@pytest.mark.parametrize("form", ["paper", "code"])
def test_positions_outside_the_tube_pass_unchanged(form):
    torch.manual_seed(0)
    block = TubeSelfAttention(6, 3, form=form).eval()
    x = torch.randn(3, 40, 6)
    select = torch.rand(3, 40) < 0.3
    select[2] = False  # a video with an empty tube
    unchanged, _ = block(x, select)
    assert torch.equal(unchanged, x)  # W_z's BN starts at zero: identity at initialisation
    torch.nn.init.ones_(block.bn.weight)
    out, attention = block(x, select)
    assert torch.equal(out[~select], x[~select])
    assert (out[select] - x[select]).abs().amin(-1).gt(0).all()
    assert torch.equal(attention[~select], torch.zeros_like(attention[~select]))
    assert torch.allclose(attention[:2].sum(1), torch.ones(2))


def test_tube_attention_sees_only_the_tube():
    """Changing features outside the tube must not change the updated tube positions (and NL-Net's do change)."""
    torch.manual_seed(1)
    block = TubeSelfAttention(5, form="paper").eval()
    torch.nn.init.ones_(block.bn.weight)
    x = torch.randn(1, 30, 5)
    select = torch.zeros(1, 30, dtype=torch.bool)
    select[0, 10:18] = True
    y = x.clone()
    y[~select] = torch.randn(int((~select).sum()), 5)
    assert torch.allclose(block(x, select)[0][select], block(y, select)[0][select])
    everything = torch.ones_like(select)
    assert not torch.allclose(block(x, everything)[0][select], block(y, everything)[0][select])


def test_fit_mask_is_an_or_downsample():
    tube = torch.zeros(1, 2, 4, 14, 14)
    tube[0, 1, 2, 5, 9] = 1  # one cell at step 2 of clip 1
    small = fit_mask(tube, (1, 7, 7))
    assert small.shape == (1, 2, 1, 7, 7) and small.sum() == 1 and small[0, 1, 0, 2, 4]
    assert torch.equal(fit_mask(tube, (4, 14, 14)), tube > 0)


def _tiny_head(name: str, **options):
    config = {"variant": "light", "output": "regression", "epochs": 1, "batch_size": 4, "lr": 1e-3, **options}
    return get_head(name)(**config)


@pytest.mark.parametrize("name", ["tsa", "nl-net"])
def test_padded_clips_are_ignored(name):
    """Garbage maps and tube cells on padded clips must not change a video's prediction."""
    data = synthetic_tube_data(n=8, clips=(3, 6), seed=3)
    head = _tiny_head(name, output="usdl", usdl_bins=11)
    head.fit(data, progress=False)
    model = head.model.eval()
    torch.nn.init.ones_(model.blocks[0].bn.weight)  # make the attention matter
    batch = next(head.batcher(data).iterate(batch_size=8, train=False))
    short = int(batch.mask.sum(1).argmin())
    assert not batch.mask[short].all()
    dirty_x, dirty_tube = batch.x.clone(), batch.extra["tube"].clone()
    dirty_x[short, ~batch.mask[short]] = 50.0
    dirty_tube[short, ~batch.mask[short]] = 1.0
    dirty = Batch(dirty_x, batch.mask, batch.y, batch.index, {"tube": dirty_tube}, batch.extra_mask)
    with torch.no_grad():
        clean_y, clean_explain = head.predict_batch(model, batch)
        dirty_y, _ = head.predict_batch(model, dirty)
    assert torch.allclose(clean_y, dirty_y, atol=1e-5)
    assert clean_explain["tube_attention"][short, ~batch.mask[short]].abs().sum() == 0
    alone = head.predict(data.subset([short])).y
    assert np.allclose(alone, clean_y[short].item(), atol=1e-5)


def test_tsa_rejects_missing_or_misaligned_tubes():
    data = synthetic_tube_data(n=4, seed=0)
    with pytest.raises(ValueError, match="tube masks as extra role 'tube'"):
        _tiny_head("tsa").fit(SequenceData(data.ids, data.x, data.y), progress=False)
    bad = data.subset(range(4))
    bad.extra["tube"][1] = bad.extra["tube"][1][:-1]
    with pytest.raises(ValueError, match="video tube_0001: tube masks"):
        _tiny_head("tsa").fit(bad, progress=False)
    with pytest.raises(ValueError, match="maps have 8 channels but MaxPool3d_4a_3x3 has 480"):
        get_head("tsa")(variant="mid", i3d_weights=None, epochs=1).fit(data, progress=False)


def test_tsa_beats_nl_net_when_the_score_lives_in_the_tube():
    """Same network, same budget; only the tube restriction differs. NL-Net sees the scene's loud background level,
    which covers 4× the tube's area; TSA attends only inside the tube."""
    data = synthetic_tube_data(n=220, grid=(1, 6, 6), seed=0)
    train, val, test = data.subset(range(130)), data.subset(range(130, 160)), data.subset(range(160, 220))
    rho = {}
    for name in ("tsa", "nl-net"):
        head = get_head(name)(variant="light", output="regression", epochs=15, batch_size=16, lr=1e-3)
        head.fit(train, val, seed=0, progress=False)
        rho[name] = spearman(head.predict(test).y, test.y)
    assert rho["tsa"] > 0.85, rho
    assert rho["tsa"] - rho["nl-net"] > 0.3, rho


def test_i3d_tail_is_the_rest_of_i3d():
    """maps at MaxPool3d_4a → tail == the full network's clip feature (same weights, random init)."""
    from aqa_pipeline.encoders.i3d import ENDPOINTS, InceptionI3d

    torch.manual_seed(0)
    trunk = InceptionI3d(map_endpoint="MaxPool3d_4a_3x3").eval()
    tail = I3DTail("MaxPool3d_4a_3x3", weights=None, finetune=False)
    names = ENDPOINTS[ENDPOINTS.index("MaxPool3d_4a_3x3") + 1 :]
    for layer, name in zip(tail.layers, names, strict=True):
        layer.load_state_dict(getattr(trunk, name).state_dict())
    clip = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    with torch.no_grad():
        out = trunk(clip)
        assert torch.allclose(tail(out.maps), out.features, atol=1e-5)
    assert not any(p.requires_grad for p in tail.parameters())
    assert not tail.train().layers.training  # BN statistics stay frozen


@pytest.mark.realdata
def test_i3d_tail_loads_the_kinetics_weights(weights_dir):
    tail = I3DTail("Mixed_4e", weights=str(weights_dir / "i3d_rgb_kinetics400.pt"), finetune=True)
    state = torch.load(weights_dir / "i3d_rgb_kinetics400.pt", map_location="cpu", weights_only=True)
    assert torch.equal(tail.layers[0].b0.conv3d.weight, state["Mixed_4f.b0.conv3d.weight"])
    assert all(p.requires_grad for p in tail.parameters())


def test_boxes_from_the_store_become_per_clip_tube_masks():
    from aqa_pipeline.store.reader import FeatureSet

    maps = [np.zeros((2, 480, 4, 14, 14), dtype=np.float32)]
    boxes = np.tile(np.array([[0, 0, 320, 360, 0.9]], dtype=np.float32), (40, 1))  # left half, 40 frames
    boxes[20:, [0, 2]] = (320, 640)  # from frame 120 on: the right half
    source = FeatureSet(
        ids=["v"],
        features={"i3d_maps": maps, "boxes": [boxes]},
        times={"i3d_maps": [np.array([100, 120])], "boxes": [np.arange(100, 140)]},
        labels=[{"score": 1.0}],
        provenance={"i3d_maps": {"clip_len": 16}, "boxes": {"frame_size": [640, 360]}},
    )
    data = SequenceData(
        ["v"], source.features["i3d_maps"], np.zeros(1), extra={"tube": source.features["boxes"]}
    )
    head = get_head("tsa")
    tube = head.adapt_inputs(data, source, primary="i3d_maps", options=head.Options()).extra["tube"][0]
    assert tube.shape == (2, 4, 14, 14)
    assert tube[0, :, :, :7].all() and not tube[0, :, :, 7:].any()
    assert tube[1, :, :, 7:].all() and not tube[1, :, :, :7].any()
