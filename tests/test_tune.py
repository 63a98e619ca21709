"""aqa-fit --tune: every declared search space is valid, the study resumes, best.yaml runs again as a config."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import numpy as np
import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner

from aqa_pipeline.cli.fit import main as fit_main
from aqa_pipeline.heads.registry import get_head, head_names
from aqa_pipeline.heads.search import Integer, OneOf, Real
from aqa_pipeline.store import FeatureStore
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.data import SequenceData
from aqa_pipeline.train.fitting import FitTask
from aqa_pipeline.train.protocol import Fold
from aqa_pipeline.train.run import FitConfig, run
from aqa_pipeline.train.rundir import RunDirError
from aqa_pipeline.train.tune import STUDY_FILE, searched_space, tune

torch.set_num_threads(1)
TUNED_HEADS = [name for name in head_names() if get_head(name).search_space]


def _clips(n=12, dim=16, seed=0) -> SequenceData:
    """Videos as long as short Fis-V programmes are in clips (40-60), so windows and segment counts fit; with
    seven judges' scores and a difficulty (MUSDL learns from them)."""
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal((int(t), dim)).astype(np.float32) for t in rng.integers(40, 61, size=n)]
    judges = rng.uniform(0, 10, (n, 7))
    y = rng.uniform(0, 1, n).astype(np.float32)
    ids = [f"v{i}" for i in range(n)]
    return SequenceData(
        ids, x, y, difficulty=np.full(n, 2.0), judges=judges, to_working=lambda s, _=None: s / 60
    )


def test_the_heads_that_train_by_epochs_declare_a_search_space():
    assert {"weight-score", "gdlt", "tpt", "action-net", "core", "mlp", "lstm", "bilstm", "usdl"} <= set(
        TUNED_HEADS
    )


@pytest.mark.parametrize("extreme", ["low", "high"])
@pytest.mark.parametrize("name", TUNED_HEADS)
def test_a_trial_at_each_extreme_of_the_space_builds_and_trains(name, extreme):
    head_cls = get_head(name)
    pick = 0 if extreme == "low" else -1
    options = {key: dim.extremes()[pick] for key, dim in head_cls.search_space.items()}
    for key, dim in head_cls.search_space.items():
        assert key in asdict(head_cls.Options()), f"{name}: {key} is searched but is no option"
        assert isinstance(dim, (Real, Integer, OneOf))
    head = head_cls(**{**options, "epochs": 1})
    train, val = _clips(12), _clips(6, seed=1)
    history = head.fit(train, val, progress=False)
    assert len(history.train_loss) == 1 and np.isfinite(history.train_loss[0])
    assert np.isfinite(head.predict(val).y).all()


def test_heads_without_a_space_and_fully_fixed_spaces_are_refused():
    with pytest.raises(ValueError, match="'ridge' declares no search space"):
        searched_space(FitConfig(head="ridge"))
    fixed = {key: dim.extremes()[0] for key, dim in get_head("mlp").search_space.items()}
    with pytest.raises(ValueError, match="fixed with --set"):
        searched_space(FitConfig(head="mlp", head_options=fixed))
    assert "dropout" not in searched_space(FitConfig(head="mlp", head_options={"dropout": 0.2}))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "s.h5"
    return write_synthetic_store(path, kind="pooled", n_train=40, n_test=20, dim=8, length=(6, 10))


FAST_MLP = {"hidden": [16], "eval_every": 1}


@pytest.mark.slow
def test_a_search_resumes_and_its_best_config_runs_again(store, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    config = FitConfig(head="mlp", head_options=FAST_MLP, cv=3, progress=False)
    loaded_splits = []
    original_load = FeatureStore.load

    def spy(self, kinds, split=None, **kwargs):
        loaded_splits.append(split)
        return original_load(self, kinds, split=split, **kwargs)

    monkeypatch.setattr(FeatureStore, "load", spy)
    first = tune(store, config, 3, out)
    assert first.complete + first.pruned == 3 and loaded_splits == ["train"]  # the test split is never loaded
    again = tune(store, config, 5, out)  # the same command with more trials: continues the study
    study = optuna.load_study(study_name="aqa-tune", storage=f"sqlite:///{out / STUDY_FILE}")
    assert len(study.trials) == 5 and again.complete + again.pruned == 5
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [int(r["trial"]) for r in rows] == list(range(5))
    best_value = max(float(r["cv_spearman"]) for r in rows if r["state"] == "complete")
    assert again.best_value == pytest.approx(best_value, abs=1e-6)
    assert (out / "tuning.png").stat().st_size > 10_000
    summary = json.loads((out / "tuning.json").read_text())
    assert summary["best_options"] == again.best_options and summary["cv"] == 3

    # best.yaml is an aqa-fit --config file: run on the same folds it gives back the best trial's CV score
    chosen = yaml.safe_load((out / "best.yaml").read_text())
    assert chosen["head_options"] == {**FAST_MLP, **again.best_options}
    rerun = run(store, FitConfig.from_dict({**chosen, "progress": False, "final_model": False}))
    fold_scores = study.best_trial.user_attrs["fold_spearman"]
    assert np.mean([m["spearman"] for m in rerun.metrics["cv"]["per_seed"]]) == pytest.approx(
        np.mean(fold_scores), abs=1e-6
    )


def test_a_study_is_not_resumed_with_other_settings(store, tmp_path):
    out = tmp_path / "tune"
    tune(store, FitConfig(head="mlp", head_options={**FAST_MLP, "epochs": 3}, cv=3, progress=False), 1, out)
    with pytest.raises(RunDirError, match="target differ"):
        tune(
            store, FitConfig(head="mlp", target="other", head_options={**FAST_MLP, "epochs": 3}, cv=3), 2, out
        )


def test_an_interrupted_trial_is_run_again_with_its_options(store, tmp_path):
    out = tmp_path / "tune"
    config = FitConfig(head="mlp", head_options={**FAST_MLP, "epochs": 3}, cv=3, progress=False)
    tune(store, config, 1, out)
    study = optuna.load_study(study_name="aqa-tune", storage=f"sqlite:///{out / STUDY_FILE}")
    cut_off = study.ask(
        {"dropout": optuna.distributions.FloatDistribution(0.0, 0.7)}
    )  # left RUNNING, as a kill does
    params = {"dropout": cut_off.params["dropout"]}
    tune(store, config, 2, out)
    trials = optuna.load_study(study_name="aqa-tune", storage=f"sqlite:///{out / STUDY_FILE}").trials
    assert trials[cut_off.number].state == optuna.trial.TrialState.FAIL
    assert trials[-1].state.is_finished() and trials[-1].params["dropout"] == params["dropout"]


def test_cli_tune_prints_the_best_trial_and_the_next_command(store, tmp_path):
    out = tmp_path / "cli"
    args = [str(store), "--head", "mlp", "--tune", "2", "--cv", "3", "--quiet", "--out", str(out)]
    args += ["--set", "hidden=[16]", "--set", "epochs=3"]
    result = CliRunner().invoke(fit_main, args)
    assert result.exit_code == 0, result.output
    assert "best: trial" in result.output and f"--config {out}/best.yaml" in result.output
    args[args.index("--cv") + 1] = "4"
    result = CliRunner().invoke(fit_main, args)
    assert result.exit_code != 0 and "(cv differ)" in result.output


def test_a_trial_reports_the_plan_prefix_whatever_order_the_fits_finish_in(monkeypatch):
    """Step k is always the mean of the plan's first k+1 fits, so the pruner compares the same folds."""
    from aqa_pipeline.train import tune as tune_module

    spearman = {0: 0.1, 1: 0.3, 2: 0.5}
    monkeypatch.setattr(tune_module, "fold_spearman", lambda result: spearman[result])

    class OutOfOrder:
        def results(self, tasks):
            yield from ((i, i) for i in (2, 0, 1))

    trial = optuna.create_study(direction="maximize").ask()
    fold = Fold("fold1", np.arange(4), None, np.arange(4, 6), score_on_test=False)
    template = [FitTask(FitConfig(head="mlp"), fold, seed) for seed in range(3)]
    value = tune_module._objective(trial, FitConfig(head="mlp"), {}, template, OutOfOrder())
    assert value == pytest.approx(0.3)
    study_trial = trial.study.trials[0]
    assert study_trial.intermediate_values == pytest.approx({0: 0.1, 1: 0.2, 2: 0.3})


def test_a_search_whose_every_trial_diverged_says_so(store, tmp_path, monkeypatch):
    def diverge(self, *args, **kwargs):
        raise ValueError("head 'mlp' predicted NaN/inf")

    monkeypatch.setattr(get_head("mlp"), "fit", diverge)
    with pytest.raises(ValueError, match="no trial of .*study.db finished \\(2 failed"):
        tune(store, FitConfig(head="mlp", cv=3, progress=False), 2, tmp_path / "tune")
    assert [r["state"] for r in csv.DictReader(open(tmp_path / "tune" / "trials.csv"))] == ["fail", "fail"]
