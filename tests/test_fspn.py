"""FSPN head: ordered sub-action parsing, the group contrastive loss, masks, presets, and the actor stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.fspn import ActionParser, group_contrastive_loss, synthetic_actor_data
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)

TINY = {"size": "small", "dims": (16, 32, 64), "heads": 2, "batch_size": 16, "lr": 1e-3, "n_exemplars": 5}


def test_monotone_parsing_gives_ordered_sub_actions_on_real_clips_only():
    torch.manual_seed(0)
    parser = ActionParser(8, sub_actions=4, upsample=2, parsing="monotone", sharpness=10.0)
    mask = torch.tensor([[True] * 12, [True] * 7 + [False] * 5])
    probability = parser(torch.randn(2, 12, 8), mask)
    assert probability.shape == (2, 12, 4)
    assert torch.allclose(probability[mask].sum(-1), torch.ones(int(mask.sum())), atol=1e-5)
    assert probability[~mask].abs().sum() == 0
    for b, length in enumerate((12, 7)):
        expected_index = (probability[b, :length] * torch.arange(4.0)).sum(
            -1
        )  # mean sub-action index per clip
        assert (expected_index.diff() >= -1e-6).all()  # never goes back to an earlier sub-action
        assert expected_index[0] < 1.0 and expected_index[-1] > 2.0


def test_group_contrastive_loss_prefers_matching_groups():
    torch.manual_seed(0)
    actor = torch.randn(4, 3, 16)
    matched = group_contrastive_loss(actor, actor + 0.01 * torch.randn_like(actor), 0.1)
    shuffled = group_contrastive_loss(actor, actor[torch.randperm(4)].roll(1, dims=1), 0.1)
    assert matched < 0.05 < shuffled


def test_padding_does_not_change_predictions():
    data = synthetic_actor_data(n=12, seed=2)
    head = get_head("fspn")(**TINY, epochs=1)
    head.fit(data, seed=0, progress=False)
    together = head.predict(data).y  # batches padded to the longest video
    alone = np.array([head.predict(data.subset([i])).y[0] for i in range(3)])
    assert np.allclose(together[:3], alone, atol=1e-4)
    prediction = head.predict(data.subset([0]))
    assert prediction.explanations[0]["sub_action_probability"].shape == (len(data.x[0]), 3)


def test_bad_inputs_say_what_and_where():
    data = synthetic_actor_data(n=6, seed=0)
    with pytest.raises(ValueError, match="extra role 'actor'"):
        get_head("fspn")(**TINY, epochs=1).fit(SequenceData(data.ids, data.x, data.y), progress=False)
    bad = data.subset(range(6))
    bad.extra["actor"][2] = bad.extra["actor"][2][:-1]
    with pytest.raises(ValueError, match="video actor_0002: actor features"):
        get_head("fspn")(**TINY, epochs=1).fit(bad, progress=False)
    with pytest.raises(ValueError, match="divisible by heads"):
        get_head("fspn")(size="full", dims=(20, 40, 80)).fit(data, progress=False)
    # the scene-only ablation needs no actor features
    get_head("fspn")(**TINY, epochs=1, use_actor=False).fit(
        SequenceData(data.ids, data.x, data.y), progress=False
    )


def test_presets_differ_in_size():
    data = synthetic_actor_data(n=4, dim=32, seed=0)
    sizes = {}
    for size in ("small", "full"):
        head = get_head("fspn")(size=size)
        head.prepare(data, torch.Generator().manual_seed(0))
        sizes[size] = sum(p.numel() for p in head.build(data).parameters())
    assert sizes["full"] > 5 * sizes["small"]


def test_fspn_beats_its_no_actor_ablation_when_the_score_is_in_the_actor_stream():
    data = synthetic_actor_data(n=160, kind="pooled", seed=0)
    train, val, test = data.subset(range(90)), data.subset(range(90, 115)), data.subset(range(115, 160))
    rho = {}
    for use_actor in (True, False):
        head = get_head("fspn")(**TINY, epochs=10, use_actor=use_actor)
        head.fit(train, val, seed=0, progress=False)
        rho[use_actor] = spearman(head.predict(test).y, test.y)
    assert rho[True] > 0.8, rho
    assert rho[True] - rho[False] > 0.5, rho
