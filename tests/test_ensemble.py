"""--ensemble S: members trained with distinct seeds, predictions and explanations averaged, all S saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.ensemble import MEMBER_SEED_STEP, SeedEnsemble, average_explanations
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import synthetic_sequence_data, write_synthetic_store
from aqa_pipeline.train.checks import check_fit_config
from aqa_pipeline.train.model_card import ModelCard
from aqa_pipeline.train.run import FitConfig, predict_store, run

torch.set_num_threads(1)
TINY = {"q_number": 4, "window": None, "d_model": 16, "ffn": 32, "dropout": 0.1, "epochs": 3, "batch_size": 8}


def test_the_prediction_is_the_members_mean_and_members_differ(monkeypatch):
    data = synthetic_sequence_data("sparse", n=40, seed=0, dim=8, length=(8, 12))
    train, test = data.subset(range(30)), data.subset(range(30, 40))
    seeds = []
    original = get_head("weight-score").fit

    def spy(self, *args, seed=0, **kwargs):
        seeds.append(seed)
        return original(self, *args, seed=seed, **kwargs)

    monkeypatch.setattr(get_head("weight-score"), "fit", spy)
    ensemble = SeedEnsemble(get_head("weight-score"), 3, **TINY)
    ensemble.fit(train, None, seed=7, progress=False)
    assert seeds == [7, 7 + MEMBER_SEED_STEP, 7 + 2 * MEMBER_SEED_STEP]
    members = [m.predict(test) for m in ensemble.members]
    prediction = ensemble.predict(test)
    np.testing.assert_allclose(prediction.y, np.mean([m.y for m in members], axis=0), rtol=1e-6)
    assert not np.allclose(members[0].y, members[1].y)  # distinct seeds, distinct members
    first = prediction.explanations[0]
    np.testing.assert_allclose(
        first["weights"], np.mean([m.explanations[0]["weights"] for m in members], axis=0)
    )
    contributions = [m.explanations[0]["weights"] * m.explanations[0]["clip_scores"] for m in members]
    np.testing.assert_allclose(
        first["weights"] * first["clip_scores"], np.mean(contributions, axis=0), rtol=1e-5
    )


def test_gdlt_attention_is_averaged_through_the_grade_responses():
    rng = np.random.default_rng(0)
    members = [
        {"grades": rng.dirichlet(np.ones(3)), "attention": rng.dirichlet(np.ones(5), size=3)}
        for _ in range(4)
    ]
    averaged = average_explanations(members)
    values = np.linspace(0, 1, 3)
    per_clip = [(m["grades"] * values) @ m["attention"] for m in members]
    np.testing.assert_allclose(
        (averaged["grades"] * values) @ averaged["attention"], np.mean(per_clip, axis=0)
    )


def test_a_saved_ensemble_predicts_as_it_did_and_says_so_in_its_card(tmp_path):
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=30, n_test=10, dim=8, length=(8, 12)
    )
    config = FitConfig(head="weight-score", head_options=TINY, ensemble=2, progress=False)
    result = run(store, config, tmp_path / "run")
    assert len(result.head.members) == 2
    card = ModelCard.read(tmp_path / "run")
    assert card.ensemble == 2 and "ensemble of 2 seeds" in (tmp_path / "run" / "README.md").read_text()
    single = predict_store(tmp_path / "run", store, split="test")  # both members restored from model.pt
    test = synthetic_sequence_data("sparse", n=40, seed=0, dim=8, length=(8, 12)).subset(range(30, 40))
    members = [m.predict(test).y for m in result.head.members]
    working = np.array(
        [
            (r.prediction - single[0].explanation["label_offset"]) / single[0].explanation["label_scale"]
            for r in single
        ]
    )
    np.testing.assert_allclose(working, np.mean(members, axis=0), rtol=1e-4, atol=1e-5)
    explanation = single[0].explanation
    points = explanation["weights"] * explanation["clip_scores"] * explanation["label_scale"]
    assert explanation["label_offset"] + points.sum() == pytest.approx(single[0].prediction, rel=1e-4)


def test_ensemble_size_is_checked_before_any_data():
    with pytest.raises(ValueError, match="ensemble=0"):
        check_fit_config(FitConfig(head="ridge", ensemble=0))
    with pytest.raises(ValueError, match="at least 2"):
        SeedEnsemble(get_head("ridge"), 1)
