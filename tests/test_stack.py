"""stack: members blended by NNLS on out-of-fold predictions only; the outer fold's videos are never seen."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.run import FitConfig, predict_store, run

MEMBERS = {"members": "ridge,mlp", "member_options": {"mlp": {"epochs": 5, "hidden": [16]}}, "inner_folds": 3}


@pytest.fixture
def seen(monkeypatch):
    """Per head: ("fit", ids it trained on, validation included) and ("predict", ids scored from outside its
    own fit), in call order."""
    calls, fitting = defaultdict(list), defaultdict(int)
    for name in ("stack", "ridge", "mlp"):
        cls = get_head(name)
        fit, predict = cls.fit, cls.predict

        def fit_spy(self, train, val=None, *, _fit=fit, _name=name, **options):
            calls[_name].append(("fit", set(train.ids) | (set(val.ids) if val is not None else set())))
            fitting[_name] += 1
            try:
                return _fit(self, train, val, **options)
            finally:
                fitting[_name] -= 1

        def predict_spy(self, data, *, _predict=predict, _name=name):
            if not fitting[_name]:  # epoch selection on its own validation split is part of fitting
                calls[_name].append(("predict", set(data.ids)))
            return _predict(self, data)

        monkeypatch.setattr(cls, "fit", fit_spy)
        monkeypatch.setattr(cls, "predict", predict_spy)
    return calls


def test_the_stack_never_sees_the_scored_folds_labels(tmp_path, seen):
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="pooled", n_train=45, n_test=0, dim=8, length=(6, 10)
    )
    result = run(
        store, FitConfig(head="stack", cv=3, head_options=MEMBERS, final_model=False, progress=False)
    )
    scored = defaultdict(set)
    for row in result.predictions:
        scored[row.fold].add(row.id)
    stack_fits = [ids for kind, ids in seen["stack"] if kind == "fit"]
    assert len(stack_fits) == 3
    for trained, fold in zip(stack_fits, scored.values(), strict=True):
        assert not trained & fold and len(trained) == 30
    # inside: each member's out-of-fold prediction comes from a fit that did not see those videos
    for name in ("ridge", "mlp"):
        last_fit = None
        for kind, ids in seen[name]:
            if kind == "fit":
                last_fit = ids
            else:  # an inner held-out part, or the outer fold's scored videos
                assert not ids & last_fit
    assert result.metrics["cv"]["spearman"] > 0.8


def test_the_blend_is_non_negative_and_the_saved_stack_predicts_the_same(tmp_path):
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="pooled", n_train=40, n_test=12, dim=8, length=(6, 10)
    )
    result = run(store, FitConfig(head="stack", head_options=MEMBERS, progress=False), tmp_path / "run")
    head = result.head
    assert (head.weights >= 0).all() and head.weights.sum() > 0
    rows = predict_store(tmp_path / "run", store, split="test")
    saved = {r.id: r.prediction for r in rows}
    evaluated = {r.id: r.prediction for r in result.predictions}
    assert set(saved) == set(
        evaluated
    )  # the saved model is the final one: close to, not equal to, the fold's
    assert np.corrcoef([saved[k] for k in saved], [evaluated[k] for k in saved])[0, 1] > 0.9


def test_the_mean_blend_fits_each_member_once_and_predicts_their_average(seen):
    """No inner CV: one fit per member on all the training videos; the prediction is the members' mean."""
    rng = np.random.default_rng(0)
    videos = [rng.normal(size=(int(rng.integers(6, 10)), 8)).astype(np.float32) for _ in range(52)]
    y = np.array([v.mean() for v in videos], dtype=np.float32)
    data = SequenceData([f"v{i}" for i in range(52)], videos, y)
    train, scored = data.subset(range(40)), data.subset(range(40, 52))
    stack = get_head("stack")(**{**MEMBERS, "blend": "mean"})
    stack.fit(train, seed=0)
    assert [(kind, len(ids)) for kind, ids in seen["ridge"]] == [("fit", 40)]
    assert [(kind, len(ids)) for kind, ids in seen["mlp"]] == [("fit", 40)]
    members = np.mean([member.predict(scored).y for member in stack.members], axis=0)
    assert stack.predict(scored).y == pytest.approx(members, abs=1e-6)


def test_members_are_checked_before_any_data():
    with pytest.raises(ValueError, match="at least two"):
        get_head("stack")(members="ridge")
    with pytest.raises(ValueError, match="at least two"):
        get_head("stack")(members="ridge,nope")
    with pytest.raises(ValueError, match="needs extra feature kinds"):
        get_head("stack")(members="ridge,tsa")


def test_the_run_says_how_the_stack_chose_its_blend(tmp_path):
    """metrics.json → selection: a mean blend fits nothing on inner folds and must not claim it did."""
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="pooled", n_train=30, n_test=0, dim=8, length=(6, 10)
    )
    selections = {}
    for blend in ("nnls", "mean"):
        options = {**MEMBERS, "blend": blend, "inner_folds": 2}
        result = run(
            store, FitConfig(head="stack", cv=2, head_options=options, final_model=False, progress=False)
        )
        selections[blend] = result.metrics["selection"]
    assert "inner out-of-fold" in selections["nnls"]
    assert "plain average" in selections["mean"] and "inner" not in selections["mean"]
