"""Head options are typed dataclasses, checked by annotation and declared range, in one place, before any data."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Literal

import pytest
from click.testing import CliRunner

from aqa_pipeline.heads.options import HeadOptions, OptionError, option, parse_options
from aqa_pipeline.heads.registry import get_head, head_names


@dataclass(frozen=True)
class Toy(HeadOptions):
    epochs: int = option(10, min=1)
    lr: float = option(1e-3, min=0, min_open=True)
    window: int | None = None
    grid: list[int] = option([1, 2])
    mode: Literal["a", "b"] = "a"
    flag: bool = False


@dataclass(frozen=True)
class LongerToy(Toy):
    epochs: int = 20  # a new default keeps the parent's range


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": "abc"}, "epochs='abc': expected an integer, got text"),
        ({"epochs": 2.5}, "epochs=2.5: expected an integer, got a number"),
        ({"epochs": True}, "expected an integer, got true/false"),
        ({"epochs": 0}, "epochs=0: must be ≥ 1"),
        ({"lr": 0}, "lr=0: must be > 0"),
        ({"lr": float("nan")}, "NaN is not allowed"),
        ({"window": "x"}, "window='x': expected an integer or null, got text"),
        ({"grid": 3}, "grid=3: expected a list"),
        ({"grid": [1, "x"]}, "grid=[1, 'x']: item 1: expected an integer, got text"),
        ({"mode": "c"}, "expected one of 'a', 'b'"),
        ({"flag": 1}, "expected true/false"),
        ({"lrr": 1}, "unknown option 'lrr'; did you mean 'lr'?"),
    ],
)
def test_bad_values_name_the_option(options, message):
    with pytest.raises(OptionError, match=re.escape(message)) as error:
        parse_options(Toy, options, "toy")
    assert str(error.value).startswith("head 'toy': ") and "\n" not in str(error.value)


def test_good_values_pass():
    parsed = parse_options(Toy, {"epochs": 3, "lr": 1, "window": 8, "grid": [3], "mode": "b"}, "toy")
    assert (parsed.epochs, parsed.lr, parsed.grid, parsed.mode) == (3, 1, [3], "b")
    assert parse_options(Toy, {"window": None, "flag": True}, "toy").flag is True


def test_an_overridden_default_keeps_its_range():
    assert LongerToy().epochs == 20
    with pytest.raises(OptionError, match="epochs=0: must be ≥ 1"):
        LongerToy(epochs=0)


def test_options_are_frozen_and_their_lists_not_shared():
    first, second = Toy(), Toy()
    first.grid.append(3)
    assert second.grid == [1, 2]
    with pytest.raises(AttributeError):
        first.epochs = 5


@pytest.mark.parametrize("name", head_names())
def test_every_heads_defaults_round_trip(name):
    """The defaults pass their own checks, and a saved config (asdict) parses back to the same options."""
    head = get_head(name)
    defaults = head.Options()
    assert head.parse_options(asdict(defaults)) == defaults
    assert head.parse_options({}) == defaults


def _a_number_option(options_type) -> str:
    """An integer option with a lower bound every head has (TorchHead's epochs, the pooled heads' inner_cv...)."""
    names = {field.name for field in fields(options_type)}
    return next(name for name in ("epochs", "inner_cv", "inner_folds") if name in names)


@pytest.mark.parametrize("name", head_names())
def test_every_head_refuses_a_wrong_type_a_bad_range_and_an_unknown_name(name):
    head = get_head(name)
    key = _a_number_option(head.Options)
    for bad, problem in (("ten", "expected an integer, got text"), (0, "must be ≥")):
        with pytest.raises(OptionError, match=f"head '{name}': option {key}={bad!r}: {problem}"):
            head(**{key: bad})
    with pytest.raises(OptionError, match=f"head '{name}': unknown option 'nope'"):
        head(nope=1)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "weight-score",
            {"query_init": "noise"},
            "query_init='noise': expected one of 'learned', 'resample'",
        ),
        ("gdlt", {"optimizer": "adagrad"}, "optimizer='adagrad': expected one of 'adam', 'sgd'"),
        ("mlp", {"test_window": "half"}, "test_window='half': expected 'full' or an integer, got text"),
        ("tsa", {"blocks": 4}, "blocks=4: must be ≤ 3"),
        ("core", {"regressor": "tree", "n_intervals": 12}, "n_intervals=12: the tree needs a power of two"),
        ("musdl", {"judge_range": [10.0, 0.0]}, "judge_range=[10.0, 0.0]: expected [low, high]"),
        (
            "fspn",
            {"dims": [30, 64, 128]},
            "dims=[30, 64, 128]: must be 3 stage widths divisible by heads=8",
        ),
    ],
)
def test_choices_and_cross_option_checks_refuse_at_construction(name, options, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        get_head(name)(**options)


def test_a_head_refuses_at_construction():
    with pytest.raises(OptionError, match="head 'weight-score': option d_model='x'"):
        get_head("weight-score")(d_model="x")
    get_head("weight-score")(d_model=None)  # the documented raw-feature setting


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["lr=-1"], "head 'mlp': option lr=-1: must be > 0"),
        (["epochs=many"], "head 'mlp': option epochs='many': expected an integer, got text"),
        (["lrr=0.1"], "head 'mlp': unknown option 'lrr'; did you mean 'lr'?"),
    ],
)
def test_aqa_fit_reports_a_bad_option_before_opening_the_store(tmp_path, monkeypatch, sets, message):
    """The store file is no store, and opening it fails the test: the option error comes first."""
    from aqa_pipeline.cli.fit import main
    from aqa_pipeline.train import run

    def no_store(*args, **kwargs):
        raise AssertionError("the store was opened before the options were checked")

    monkeypatch.setattr(run, "FeatureStore", no_store)
    store = tmp_path / "not-a-store.h5"
    store.write_bytes(b"")
    args = [str(store), "--head", "mlp", "--target", "tes", "--out", str(tmp_path / "run")]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output, result.output


def test_a_model_saved_as_a_plain_dict_still_loads():
    """model.pt holds the options as a plain dict (asdict); one saved before an option existed gets its default."""
    from aqa_pipeline.synth import synthetic_sequence_data

    data = synthetic_sequence_data("pooled", n=16, dim=8, length=(4, 6))
    head = get_head("mlp")(hidden=[8], epochs=2)
    head.fit(data, progress=False)
    state = head.state_dict()
    assert state["config"] == asdict(head.options) and isinstance(state["config"], dict)
    old = {
        key: value
        for key, value in state["config"].items()
        if key not in ("patience", "standardise_inputs", "precision")
    }
    restored = get_head("mlp")()
    restored.load_state_dict({**state, "config": old})
    assert restored.options == head.options
    assert (restored.predict(data).y == head.predict(data).y).all()


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
