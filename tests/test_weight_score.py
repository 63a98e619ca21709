"""weight-score head: aggregation and attention loss against hand-computed values, masks, determinism, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.heads.weight_score import gram_kl_loss, weighted_score
from aqa_pipeline.synth import synthetic_sequence_data
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.metrics import spearman

torch.set_num_threads(1)
# small and quick for 32-d synthetic clips; the architecture (pre-norm decoder, per-slot MLPs) is the default one
SMALL = {"q_number": 8, "window": None, "ffn": 64, "dropout": 0.1, "query_std": 0.5, "batch_size": 16}


def _tiny_data(n=12, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal((int(t), dim)).astype(np.float32) for t in rng.integers(5, 11, size=n)]
    return SequenceData([f"v{i}" for i in range(n)], x, rng.uniform(0, 1, n).astype(np.float32))


def test_weighted_score_hand_case():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax → [0.25, 0.75]
    scores = torch.tensor([[2.0, 4.0]])
    prediction, weights = weighted_score(logits, scores)
    assert torch.allclose(weights, torch.tensor([[0.25, 0.75]]))
    assert prediction.item() == pytest.approx(0.25 * 2 + 0.75 * 4)


def test_attention_loss_hand_case():
    # one video, two slots, d = 1: G_self = [[1, 0], [0, 0]], G_cross = 0 (uniform rows)
    self_out = torch.tensor([[[1.0], [0.0]]])
    cross_out = torch.zeros(1, 2, 1)
    p_row0 = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = sum(0.5 * math.log(0.5 / p) for p in p_row0)  # row 1 of both is uniform: KL 0
    assert gram_kl_loss(self_out, cross_out, "sum").item() == pytest.approx(expected, rel=1e-5)
    assert gram_kl_loss(self_out, cross_out, "mean").item() == pytest.approx(expected / 2, rel=1e-5)
    same = torch.randn(3, 5, 4)
    assert gram_kl_loss(same, same.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # "sum" grows with the batch, "mean" does not: the scaling caveat made explicit
    doubled = torch.cat([self_out, self_out]), torch.cat([cross_out, cross_out])
    assert gram_kl_loss(*doubled, "sum").item() == pytest.approx(2 * expected, rel=1e-5)
    assert gram_kl_loss(*doubled, "mean").item() == pytest.approx(expected / 2, rel=1e-5)


def _fitted(**options):
    head = get_head("weight-score")(**{**SMALL, "epochs": 1, **options})
    head.fit(_tiny_data(), None, seed=0, progress=False)
    return head


def test_inference_is_deterministic_by_default_and_resample_is_not():
    data = _tiny_data(seed=1)
    head = _fitted()
    np.testing.assert_array_equal(head.predict(data).y, head.predict(data).y)
    faithful = _fitted(query_init="resample")
    assert not np.allclose(faithful.predict(data).y, faithful.predict(data).y)


def test_clip_explanations_decompose_the_prediction():
    data = _tiny_data(seed=2)
    prediction = _fitted().predict(data)
    for x, y, explanation in zip(data.x, prediction.y, prediction.explanations, strict=True):
        weights, clip_scores = explanation["weights"], explanation["clip_scores"]
        assert weights.shape == clip_scores.shape == (len(x),)
        assert weights.sum() == pytest.approx(1.0, abs=1e-5)
        assert (weights * clip_scores).sum() == pytest.approx(y, abs=1e-5)


def test_padding_does_not_change_a_prediction():
    data = _tiny_data(seed=3)
    head = _fitted()
    together = head.predict(data).y
    alone = np.array([head.predict(data.subset([i])).y[0] for i in range(len(data))])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_code_residual_option_changes_the_layer():
    data = _tiny_data(seed=4)
    standard, code = _fitted(), _fitted(residual="code")
    assert not np.allclose(standard.predict(data).y, code.predict(data).y)


def test_standardised_input_ignores_a_per_dimension_offset_and_scale():
    # raw VST features carry a large common offset; standardising with the training clips' statistics removes
    # any per-dimension affine change, so the same seed trains the same model and predicts the same scores
    train, test = _tiny_data(seed=5), _tiny_data(seed=6)
    rng = np.random.default_rng(0)
    scale, offset = rng.uniform(0.5, 3.0, 32), rng.uniform(-20.0, 20.0, 32)

    def shifted(data: SequenceData) -> SequenceData:
        return SequenceData(data.ids, [(x * scale + offset).astype(np.float32) for x in data.x], data.y)

    def predictions(input_norm: str, shift: bool) -> np.ndarray:
        fit_on, scored = (shifted(train), shifted(test)) if shift else (train, test)
        head = get_head("weight-score")(**{**SMALL, "epochs": 2, "input_norm": input_norm})
        head.fit(fit_on, None, seed=0, progress=False)
        return head.predict(scored).y

    np.testing.assert_allclose(predictions("standardise", True), predictions("standardise", False), atol=1e-4)
    assert not np.allclose(predictions("none", True), predictions("none", False), atol=1e-2)
    model = get_head("weight-score")(**SMALL).build(shifted(train))
    clips = np.concatenate(shifted(train).x)
    np.testing.assert_allclose(model.input_mean.numpy(), clips.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.input_std.numpy(), clips.std(0), rtol=1e-4)


def test_step_per_iteration_schedule_is_the_codes_quirk():
    # the code's lr, 1e-4, stepped down 10x every lr_step iterations
    head = get_head("weight-score")(**SMALL, lr=1e-4, lr_schedule="step_per_iteration", lr_step=3)
    model = head.build(_tiny_data())
    optimizer, scheduler = head.configure_optimizer(model)
    assert scheduler.per_iteration
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_bad_option_is_named():
    with pytest.raises(ValueError, match="query_init"):
        get_head("weight-score")(query_init="gaussian").build(_tiny_data())


@pytest.mark.slow
def test_learns_sparse_long_videos_better_than_pooled_ridge():
    from sklearn.linear_model import RidgeCV

    data = synthetic_sequence_data("sparse", n=300, seed=0, dim=32)
    train, val, test = data.subset(range(170)), data.subset(range(170, 200)), data.subset(range(200, 300))
    pooled = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(np.stack([x.mean(0) for x in train.x]), train.y)
    ridge_rho = spearman(pooled.predict(np.stack([x.mean(0) for x in test.x])), test.y)
    head = get_head("weight-score")(**{**SMALL, "q_number": 16, "epochs": 25, "lr": 1e-3})
    head.fit(train, val, seed=0, progress=False)
    rho = spearman(head.predict(test).y, test.y)
    assert rho > ridge_rho + 0.2, f"weight-score {rho:.3f} vs pooled ridge {ridge_rho:.3f}"
