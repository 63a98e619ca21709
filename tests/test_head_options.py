"""Head options are checked by type (from the defaults) and declared range, in one place, before any data."""

from __future__ import annotations

import pytest

from aqa_pipeline.heads.options import OptionError, Rule, validate_options
from aqa_pipeline.heads.registry import get_head, head_names

DEFAULTS = {"epochs": 10, "lr": 1e-3, "window": None, "grid": [1, 2], "mode": "a", "flag": False}
RULES = {"epochs": Rule(min=1), "lr": Rule(min=0, min_open=True), "mode": Rule(choices=("a", "b"))}


@pytest.mark.parametrize("name", head_names())
def test_every_heads_defaults_pass_its_own_rules(name):
    head = get_head(name)
    validate_options(name, head.all_defaults(), head.all_rules(), head.all_defaults())
    assert set(head.all_rules()) - set(head.all_defaults()) <= {"dropout", "pooling", "inner_cv"} | set(
        get_head("mlp").all_rules()
    ), "a rule for an option no head declares is a typo"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": "abc"}, "epochs='abc': expected an integer, got text"),
        ({"epochs": 2.5}, "epochs=2.5: expected an integer, got a number"),
        ({"epochs": True}, "expected an integer, got true/false"),
        ({"epochs": 0}, "epochs=0: must be ≥ 1"),
        ({"lr": 0}, "lr=0: must be > 0"),
        ({"lr": float("nan")}, "NaN is not allowed"),
        ({"grid": 3}, "grid=3: expected a list"),
        ({"mode": "c"}, "expected one of 'a', 'b'"),
        ({"flag": 1}, "expected true/false"),
        ({"lrr": 1}, "unknown option 'lrr'; did you mean 'lr'?"),
    ],
)
def test_bad_values_name_the_option(options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace("?", r"\?")):
        validate_options("toy", DEFAULTS, RULES, options)


def test_good_values_pass():
    validate_options("toy", DEFAULTS, RULES, {"epochs": 3, "lr": 1, "window": 8, "grid": [3], "mode": "b"})
    validate_options("toy", DEFAULTS, RULES, {"window": None, "flag": True})


def test_a_head_refuses_at_construction():
    with pytest.raises(OptionError, match="head 'weight-score': option d_model='x'"):
        get_head("weight-score")(d_model="x")
    get_head("weight-score")(d_model=None)  # the documented raw-feature setting


def test_patience_stops_training_once_validation_stops_improving(monkeypatch):
    """Validation Spearman 0.5, 0.4, 0.3, ...: the best epoch is the first, and patience 2 stops after epoch 3."""
    import numpy as np

    from aqa_pipeline.heads import base
    from aqa_pipeline.synth import synthetic_sequence_data

    checks = iter(np.linspace(0.5, -0.5, 11))
    monkeypatch.setattr(base, "spearman", lambda predicted, truth: float(next(checks)))
    data = synthetic_sequence_data("pooled", n=24, dim=8, length=(4, 6))
    head = get_head("mlp")(hidden=[8], epochs=10, eval_every=1, patience=2)
    history = head.fit(
        data, synthetic_sequence_data("pooled", n=8, seed=1, dim=8, length=(4, 6)), progress=False
    )
    assert history.best_epoch == 1 and len(history.train_loss) == 3
    with pytest.raises(OptionError, match="patience=0"):
        get_head("mlp")(patience=0)
