"""TPT: attention-centre losses by hand, segment pooling, the faithful decoder's permutation invariance,
exemplar reproducibility and learning a temporally ordered synthetic score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV

from aqa_pipeline.heads.tpt import TPTHead, attention_centres, ranking_loss, segment_pooling_matrix
from aqa_pipeline.report.attention_plots import plot_query_attention
from aqa_pipeline.synth import synthetic_sequence_data
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)
SMALL = {"d_model": 32, "d_ffn": 32, "queries": 3, "self_attention_heads": 2, "batch_size": 8}


def test_centres_and_spreads_by_hand():
    attention = torch.tensor([[[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 1.0]]])
    centre, spread = attention_centres(attention)
    np.testing.assert_allclose(centre[0], [1.0, 1.5, 4.0])
    np.testing.assert_allclose(spread[0], [0.0, 0.5, 0.0])


def test_ranking_loss_by_hand_and_prefers_ordered_centres():
    lengths = torch.tensor([10])
    # centres 2, 5, 9 with margin 2: gaps 3, 4 fine; first: relu(2 - (2-1)) = 1; last: relu(2 - (10-9)) = 1
    assert ranking_loss(torch.tensor([[2.0, 5.0, 9.0]]), lengths, 2.0).item() == pytest.approx(2.0)
    # reversed: consecutive hinges relu(2+3) and relu(2+4) averaged = 5.5; first relu(2-8)=0; last relu(2-8)=0
    assert ranking_loss(torch.tensor([[9.0, 5.0, 2.0]]), lengths, 2.0).item() == pytest.approx(5.5)


def test_segment_pooling_averages_real_clips_only():
    pooling = segment_pooling_matrix(torch.tensor([4, 2]), segments=2, width=5)
    np.testing.assert_allclose(pooling[0], [[0.5, 0.5, 0, 0, 0], [0, 0, 0.5, 0.5, 0]])
    np.testing.assert_allclose(pooling[1], [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]])


def test_margin_is_rescaled_to_the_clip_count():
    head = TPTHead(segments=None)
    np.testing.assert_allclose(head.margin_for(torch.tensor([20, 40])), [3.2, 6.4])
    assert TPTHead(margin_clips=None).margin_for(torch.tensor([40])).item() == pytest.approx(3.2)


def test_faithful_decoder_sees_a_set_of_clips():
    """No positional encoding (as the authors' code): shuffling clips leaves the part features unchanged."""
    data = synthetic_sequence_data("ordered", n=8, seed=1, dim=16)
    head = TPTHead(**SMALL, segments=None)
    model = head.build(data).eval()
    x = torch.as_tensor(data.x[0])[None]
    mask = torch.ones(1, len(x[0]), dtype=torch.bool)
    shuffled = x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        torch.testing.assert_close(head.encode(model, x, mask)[0], head.encode(model, shuffled, mask)[0])


def _ridge_spearman(train, test) -> float:
    def pooled(d):
        return np.stack([x.mean(0) for x in d.x])

    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(pooled(train), train.y)
    return spearman(ridge.predict(pooled(test)), test.y)


def test_learns_ordered_parts_better_than_a_pooled_baseline_with_reproducible_exemplars(tmp_path):
    """The faithful decoder is a function of the clip *set* and its pair encoder is symmetric in the parts, so
    on purely ordered signal it can do little better than pooling; with relative-position keys and part identity
    (both options, off by default) it parses the parts."""
    data = synthetic_sequence_data("ordered", n=300, seed=0, dim=16)
    train, val, test = data.subset(range(160)), data.subset(range(160, 200)), data.subset(range(200, 300))
    baseline = _ridge_spearman(train, test)
    head = TPTHead(**SMALL, positional="sinusoidal", part_identity=True, epochs=20, lr=1e-3, eval_every=2)
    head.fit(train, val, seed=0, progress=False)
    prediction = head.predict(test)
    rho = spearman(prediction.y, test.y)
    assert rho > baseline + 0.1, f"tpt {rho:.3f} vs pooled ridge {baseline:.3f}"

    first = prediction.explanations[0]
    assert first["attention"].shape == (3, len(test.x[0]))
    np.testing.assert_allclose(first["attention"].sum(1), 1.0, atol=1e-5)
    figure = plot_query_attention(first["attention"], tmp_path / "tpt.png", centres=first["attention_centre"])
    assert figure.stat().st_size > 1000
    lists = head.exemplar_lists(test)
    np.testing.assert_array_equal(np.stack([e["exemplar_index"] for e in prediction.explanations]), lists)
    np.testing.assert_array_equal(head.predict(test).y, prediction.y)  # deterministic inference

    restored = TPTHead()
    restored.load_state_dict(head.state_dict())
    np.testing.assert_allclose(restored.predict(test).y, prediction.y, atol=1e-5)
