"""ACTION-NET: graph normalisation by hand, both graph kinds, the two-stream variant, the authors' SGD schedule,
and learning a score carried by a few salient clips (attention pooling beats mean pooling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV

from aqa_pipeline.heads.action_net import (
    ActionNetHead,
    feature_adjacency,
    normalise_adjacency,
    temporal_adjacency,
)
from aqa_pipeline.report.attention_plots import plot_attention_timeline
from aqa_pipeline.synth import synthetic_sequence_data
from aqa_pipeline.train.data import Batcher
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)
SMALL = {"embed_dim": 16, "attention_hidden": 16, "fusion_hidden": 16}


def test_temporal_graph_normalisation_by_hand():
    mask = torch.tensor([[True, True, False]])
    a_hat = normalise_adjacency(temporal_adjacency(mask), mask)[0]
    e = math.exp(-1)
    # real block [[1, e], [e, 1]], both degrees 1 + e -> divided by (1 + e); the padded clip is disconnected
    expected = torch.tensor([[1, e, 0], [e, 1, 0], [0, 0, 0]]) / torch.tensor([[1 + e, 1 + e, 1]])
    torch.testing.assert_close(a_hat, expected.to(a_hat.dtype))


def test_self_loops_are_added_to_graphs_without_them():
    mask = torch.ones(1, 2, dtype=torch.bool)
    a_hat = normalise_adjacency(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), mask)[0]
    torch.testing.assert_close(a_hat, torch.full((2, 2), 0.5))


def test_feature_graph_links_nearest_real_neighbours_symmetrically():
    features = torch.tensor([[[0.0], [1.0], [10.0], [0.5]]])
    mask = torch.tensor([[True, True, True, False]])
    adjacency = feature_adjacency(features, mask, neighbours=1)[0]
    torch.testing.assert_close(adjacency, adjacency.T)
    assert adjacency[0, 1] > 0 and adjacency[0, 2] == 0 and adjacency[:, 3].abs().sum() == 0
    assert adjacency[2, 1] > 0  # clip 2's nearest neighbour is clip 1


def test_two_streams_give_attention_per_stream_summing_to_one():
    data = synthetic_sequence_data("pooled", n=6, seed=0, dim=8)
    rng = np.random.default_rng(0)
    data.extra["static"] = [rng.standard_normal((len(x) + 5, 12)).astype(np.float32) for x in data.x]
    head = ActionNetHead(**SMALL, window=10, extra_windows={"static": 16}, epochs=1, graph="feature")
    head.fit(data, None, progress=False)
    assert set(head.model.streams) == {"dynamic", "static"}
    prediction = head.predict(data)
    explained = prediction.explanations[0]
    assert explained["attention"].shape == (len(data.x[0]),)
    static = explained["static_attention"]  # evaluation reads whole videos in every stream
    assert static.shape == (len(data.extra["static"][0]),)
    np.testing.assert_allclose([explained["attention"].sum(), static.sum()], 1.0, atol=1e-5)
    batch = Batcher(data, None, "full").batch([0, 1], train=False)
    batch.extra.clear()
    with pytest.raises(ValueError, match="static"):
        head.predict_batch(head.model, batch)


def test_authors_sgd_schedule():
    head = ActionNetHead(**SMALL, optimizer="sgd", lr=0.01, epochs=300)
    model = head.build(synthetic_sequence_data("pooled", n=4, seed=0, dim=8))
    optimizer, scheduler = head.configure_optimizer(model)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.05]
    assert sorted(scheduler.milestones) == [200, 250] and scheduler.gamma == 0.1


def test_learns_sparse_salient_clips_better_than_a_pooled_baseline(tmp_path):
    data = synthetic_sequence_data("sparse", n=300, seed=0, dim=16)
    train, val, test = data.subset(range(160)), data.subset(range(160, 200)), data.subset(range(200, 300))
    pooled = [np.stack([x.mean(0) for x in d.x]) for d in (train, test)]
    baseline = spearman(
        RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(pooled[0], train.y).predict(pooled[1]), test.y
    )
    head = ActionNetHead(**SMALL, window=None, epochs=40, eval_every=2)
    head.fit(train, val, seed=0, progress=False)
    prediction = head.predict(test)
    rho = spearman(prediction.y, test.y)
    assert rho > baseline + 0.2, f"action-net {rho:.3f} vs pooled ridge {baseline:.3f}"
    assert prediction.y.min() >= train.y.min() - 1e-6 and prediction.y.max() <= train.y.max() + 1e-6
    figure = plot_attention_timeline(
        {"dynamic": prediction.explanations[0]["attention"]}, tmp_path / "an.png"
    )
    assert figure.stat().st_size > 1000
