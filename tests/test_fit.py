"""aqa-fit: metrics, protocols (test never used for selection), determinism, baselines, bad input, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import synthetic_sequence_data, write_synthetic_store
from aqa_pipeline.train.labels import LabelTransform
from aqa_pipeline.train.metrics import fisher_z_mean, per_class_metrics, regression_metrics, summarise
from aqa_pipeline.train.protocol import make_folds
from aqa_pipeline.train.run import FitConfig, run

torch.set_num_threads(1)
FAST = {
    "mlp": {"epochs": 40},
    "lstm": {"epochs": 12, "hidden": 32, "window": None},
    "bilstm": {"epochs": 12, "hidden": 32, "window": None},
    "usdl": {"epochs": 60, "lr": 1e-3},
}


# -- metrics ----------------------------------------------------------------------------------------------
def test_metrics_against_hand_computed_values():
    truth, prediction = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0]
    m = regression_metrics(truth, prediction)
    # ranks of prediction: 1, 3, 2, 4 → d = 0, 1, -1, 0 → ρ = 1 - 6·2/(4·15) = 0.8
    assert m["spearman"] == pytest.approx(0.8)
    # errors 0, 1, -1, 1 → MSE 0.75; range 3 → RL2 = mean((e/3)^2)·100 = (3/9)/4·100, |e|/3 mean = 1/4
    assert m["mse"] == pytest.approx(0.75)
    assert m["rl2"] == pytest.approx(100 * 3 / 9 / 4)
    assert m["rl2_abs"] == pytest.approx(0.25)
    assert m["pearson"] == pytest.approx(np.corrcoef(truth, prediction)[0, 1])
    assert m["n"] == 4


def test_fisher_z_average_and_per_class():
    assert fisher_z_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert fisher_z_mean([0.9, 0.1]) == pytest.approx(np.tanh((np.arctanh(0.9) + np.arctanh(0.1)) / 2))
    assert np.isfinite(fisher_z_mean([1.0, 0.5]))  # guarded at ±1
    result = per_class_metrics([1, 2, 3, 1, 2, 3], [1, 2, 3, 3, 2, 1], ["a", "a", "a", "b", "b", "b"])
    assert result["classes"]["a"]["spearman"] == pytest.approx(1.0)
    assert result["classes"]["b"]["spearman"] == pytest.approx(-1.0)


def test_summarise_over_seeds():
    s = summarise([{"spearman": 0.5}, {"spearman": 0.7}])
    assert s["spearman_mean"] == pytest.approx(0.6) and s["spearman_std"] == pytest.approx(
        np.std([0.5, 0.7], ddof=1)
    )


def test_label_transform_round_trip_and_dd():
    scores, dd = np.array([30.0, 60.0, 90.0]), np.array([2.0, 3.0, 3.0])
    t = LabelTransform.fit(scores, dd, mode="minmax", use_dd=True)
    y = t.forward(scores, dd)
    assert y.min() == pytest.approx(0.0) and y.max() == pytest.approx(1.0)  # 15, 20, 30 scaled
    assert np.allclose(t.inverse(y, dd), scores)
    assert LabelTransform.fit(scores, None, mode="paper", use_dd=False, dataset="fis-v").scale == 43.0


# -- protocols --------------------------------------------------------------------------------------------
def test_folds_never_select_on_scored_videos():
    def folds(n, **options):
        defaults = {"cv": None, "has_test": False, "n_test": 0, "seed": 0, "val_fraction": 0.2,
                    "uses_validation": True, "paper_selection": False}  # fmt: skip
        return make_folds(n, **{**defaults, **options})

    for fold in folds(100, has_test=True, n_test=30) + folds(100, cv=5, seed=3):
        assert not set(fold.fit) & set(fold.val)
        if not fold.score_on_test:
            assert not (set(fold.fit) | set(fold.val)) & set(fold.score)
    cv_scored = np.concatenate([f.score for f in folds(50, cv=5, val_fraction=0.1)])
    assert sorted(cv_scored) == list(range(50))  # every training video is scored exactly once
    for fold in folds(50, cv=5, val_fraction=0.0):  # no carve (gdlt's default): all the others train
        assert fold.val is None and sorted(np.concatenate([fold.fit, fold.score])) == list(range(50))
    with pytest.raises(ValueError, match="too few"):
        folds(6, cv=5, val_fraction=0.1)


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("store") / "synth.h5",
        kind="pooled",
        n_train=80,
        n_test=30,
        dim=16,
        length=(6, 12),
    )


def test_test_split_is_never_seen_by_fit_or_selection(synthetic_store, monkeypatch):
    from aqa_pipeline.heads.baselines import MLPHead

    seen: dict[str, set] = {"fit": set(), "val": set()}
    original = MLPHead.fit

    def spy(self, train, val=None, **kwargs):
        seen["fit"] |= set(train.ids)
        seen["val"] |= set(val.ids) if val is not None else set()
        return original(self, train, val, **kwargs)

    monkeypatch.setattr(MLPHead, "fit", spy)
    result = run(synthetic_store, FitConfig(head="mlp", head_options={"epochs": 3}, progress=False))
    test_ids = {p.id for p in result.predictions}
    assert len(test_ids) == 30 and "test" in result.metrics
    assert not test_ids & (seen["fit"] | seen["val"])
    assert seen["val"], "a validation split was carved from train for epoch selection"

    seen["fit"], seen["val"] = set(), set()
    paper = run(
        synthetic_store,
        FitConfig(
            head="mlp", protocol="paper", head_options={"epochs": 3}, progress=False, final_model=False
        ),
    )
    assert seen["val"] == test_ids  # the paper protocol selects on test ...
    assert "PAPER PROTOCOL" in paper.metrics["warning"]  # ... and says so
    assert "paper protocol" in paper.metrics["selection"]


def test_same_seed_same_predictions(synthetic_store):
    config = FitConfig(head="mlp", head_options={"epochs": 5}, progress=False, final_model=False, seeds=[7])
    a = [p.prediction for p in run(synthetic_store, config).predictions]
    b = [p.prediction for p in run(synthetic_store, config).predictions]
    c = [
        p.prediction for p in run(synthetic_store, FitConfig(**{**config.__dict__, "seeds": [8]})).predictions
    ]
    assert a == b
    assert a != c


# -- baseline heads learn what only a working head can ------------------------------------------------------
@pytest.mark.parametrize("name", ["svr", "ridge", "mlp", "lstm", "bilstm", "usdl"])
def test_baseline_heads_learn_a_pooled_signal(name):
    data = synthetic_sequence_data("pooled", n=160, seed=1, dim=16, length=(6, 12))
    train, val, test = data.subset(range(100)), data.subset(range(100, 120)), data.subset(range(120, 160))
    head = get_head(name)(**FAST.get(name, {}))
    head.fit(train, val, seed=0, progress=False)
    rho = regression_metrics(test.y, head.predict(test).y)["spearman"]
    assert rho > 0.85, f"{name}: Spearman {rho:.3f} on a signal any working head recovers"


def test_musdl_combines_judges_by_the_diving_rule():
    head = get_head("musdl")()
    judges = torch.tensor([[7.0, 8.0, 6.0, 9.0, 5.0, 8.5, 7.5]])
    # sorted 5, 6, 7, 7.5, 8, 8.5, 9 → middle three 7 + 7.5 + 8 = 22.5, × DD 3.0
    assert float(head.combine(judges, torch.tensor([3.0]))) == pytest.approx(67.5)


def test_usdl_soft_labels_are_normalised_gaussians():
    from aqa_pipeline.heads.usdl import gaussian_soft_labels

    grid = torch.linspace(0, 1, 11)
    target = gaussian_soft_labels(torch.tensor([0.5]), grid, 0.1)[0]
    assert float(target.sum()) == pytest.approx(1.0)
    assert int(target.argmax()) == 5 and float(target[4]) == pytest.approx(float(target[6]))
    expected = np.exp(-0.5 * ((np.linspace(0, 1, 11) - 0.5) / 0.1) ** 2)
    assert np.allclose(target.numpy(), expected / expected.sum(), atol=1e-6)


# -- bad input --------------------------------------------------------------------------------------------
def test_bad_requests_fail_before_training(synthetic_store):
    with pytest.raises(KeyError, match="unknown head 'nope'; available"):
        run(synthetic_store, FitConfig(head="nope"))
    with pytest.raises(ValueError, match="target 'tes' is missing .* labels in this store: \\['score'\\]"):
        run(synthetic_store, FitConfig(head="svr", target="tes"))
    with pytest.raises(Exception, match="no feature kind 'i3d'"):
        run(synthetic_store, FitConfig(head="svr", feature="i3d"))
    with pytest.raises(ValueError, match="unknown option .epoch.; did you mean .epochs."):
        run(synthetic_store, FitConfig(head="mlp", head_options={"epoch": 3}))


# -- the command line ---------------------------------------------------------------------------------------
def test_cli_writes_a_complete_run_directory_and_predicts(synthetic_store, tmp_path, monkeypatch):
    from aqa_pipeline.cli.fit import main

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    out = tmp_path / "run"
    args = ["--head", "ridge", str(synthetic_store), "--cv", "3", "--seeds", "2", "--threads", "1"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert threads == [1]
    metrics = json.loads((out / "metrics.json").read_text())
    cv = metrics["cv"]
    for key in ("spearman", "pearson", "mse", "rl2", "rl2_abs", "n", "spearman_std", "per_seed"):
        assert key in cv
    seeds = [m["spearman"] for m in cv["per_seed"]]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    # the headline number is the mean over seeds, the same one the console prints
    assert cv["spearman"] == pytest.approx(np.mean(seeds)) and cv["spearman"] > 0.9
    assert cv["spearman_std"] == pytest.approx(np.std(seeds, ddof=1))
    assert f"spearman  {cv['spearman']:.4f} ± {cv['spearman_std']:.4f}" in result.output
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 2 * 80 and {r["seed"] for r in rows} == {"0", "1"}
    inputs = json.loads((out / "run.json").read_text())
    assert inputs["provenance"]["synth"]["encoder"] == "synthetic:pooled"
    for name in ("model.pt", "scatter.png", "config.json"):
        assert (out / name).is_file()
    assert not (out / "training_curve.png").exists()  # ridge has no epochs: no blank plot

    scored = tmp_path / "scored"
    predicted = CliRunner().invoke(
        main, ["--predict", str(out), str(synthetic_store), "--split", "test", "--out", str(scored)]
    )
    assert predicted.exit_code == 0, predicted.output
    assert len((scored / "predictions.csv").read_text().splitlines()) == 31
    assert not list(out.glob("predictions_*"))  # the training run is left as it was
    scored_metrics = json.loads((scored / "metrics.json").read_text())
    assert scored_metrics["n"] == 30 and scored_metrics["spearman"] > 0.9
    assert f"spearman  {scored_metrics['spearman']:.4f}" in predicted.output


def test_existing_out_is_refused_unless_overwrite_which_empties_it(synthetic_store, tmp_path):
    from aqa_pipeline.cli.fit import main

    out = tmp_path / "run"
    (out / "explanations").mkdir(parents=True)
    (out / "explanations" / "stale.npz").write_bytes(b"from an earlier gdlt run")
    (out / "config.json").write_text("{}")
    args = ["--head", "ridge", str(synthetic_store), "--cv", "3", "--out", str(out), "--quiet"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "is not empty" in refused.output and "--overwrite" in refused.output
    assert (out / "explanations" / "stale.npz").is_file()
    replaced = CliRunner().invoke(main, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert not (out / "explanations").exists() and (out / "metrics.json").is_file()

    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    args[args.index(str(out))] = str(foreign)
    kept = CliRunner().invoke(main, [*args, "--overwrite"])
    assert kept.exit_code == 1 and "does not look like an aqa run directory" in kept.output
    assert (foreign / "thesis.tex").is_file()


def test_saved_config_is_what_config_takes(synthetic_store, tmp_path):
    from aqa_pipeline.cli.fit import main

    first, again = tmp_path / "first", tmp_path / "again"
    args = ["--head", "svr", str(synthetic_store), "--target", "score", "--cv", "3", "--seed", "4", "--quiet"]
    assert CliRunner().invoke(main, [*args, "--set", "C=[0.1,1.0]", "--out", str(first)]).exit_code == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["head"] == "svr" and saved["seeds"] == [4] and saved["head_options"]["C"] == [0.1, 1.0]
    assert saved["head_options"]["inner_cv"] == 5  # every option resolved, not only the ones given
    rerun = CliRunner().invoke(main, [str(synthetic_store), "--config", str(first / "config.json"), "--out", str(again), "--quiet"])  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((again / "config.json").read_text()) == saved
    metrics = [json.loads((d / "metrics.json").read_text())["cv"] for d in (first, again)]
    assert metrics[0]["per_seed"] == metrics[1]["per_seed"]


def test_outer_progress_bar_counts_folds_times_seeds(synthetic_store, capsys):
    run(synthetic_store, FitConfig(head="ridge", cv=3, seeds=[0, 1], progress=True))
    err = capsys.readouterr().err
    assert "ridge folds × seeds" in err and "7/7" in err  # 3 folds × 2 seeds + the final model


def test_training_loop_logs_each_epoch_to_the_tracker(synthetic_store, tmp_path, monkeypatch):
    import sys
    import types

    from aqa_pipeline.train.tracking import TrackingError

    calls: list[tuple] = []
    fake = types.SimpleNamespace(
        start_run=lambda run_name: calls.append(("start", run_name)),
        log_params=lambda params: calls.append(("params", params["head"])),
        log_metrics=lambda values, step: calls.append(("metrics", step, values)),
        end_run=lambda: calls.append(("end",)),
    )
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    config = FitConfig(
        head="mlp", head_options={"epochs": 3}, progress=False, final_model=False, log="mlflow"
    )
    run(synthetic_store, config, tmp_path / "run")
    assert calls[0] == ("start", "mlp") and calls[1] == ("params", "mlp") and calls[-1] == ("end",)
    epochs = [c for c in calls if c[0] == "metrics"]
    assert [c[1] for c in epochs] == [1, 2, 3]
    assert set(epochs[-1][2]) == {"seed0/test/train_loss", "seed0/test/val_spearman"}

    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    with pytest.raises(TrackingError, match="--log mlflow needs the mlflow package: pip install mlflow"):
        run(synthetic_store, config, tmp_path / "other")


def test_cli_help_is_fast_and_teaches():
    import subprocess
    import sys
    import time

    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-m", "aqa_pipeline.cli.fit", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Examples" in output and "--cv" in output and "--protocol" in output
    code = "import sys, aqa_pipeline.cli.fit; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
    assert time.perf_counter() - started < 30


def test_musdl_learns_from_per_judge_scores():
    data = synthetic_sequence_data("pooled", n=160, seed=2, dim=16, length=(6, 12))
    rng = np.random.default_rng(0)
    data.judges = np.clip(np.round((data.y[:, None] * 8 + 1 + rng.normal(0, 0.3, (160, 7))) * 2) / 2, 0, 10)
    data.to_working = lambda raw, difficulty: (raw - 3.0) / 24.0  # 3 × (1..9) → [0, 1]
    train, val, test = data.subset(range(100)), data.subset(range(100, 120)), data.subset(range(120, 160))
    head = get_head("musdl")(epochs=60, lr=1e-3)
    head.fit(train, val, seed=0, progress=False)
    assert regression_metrics(test.y, head.predict(test).y)["spearman"] > 0.85


def test_exemplar_lists_are_saved_and_reproducible(synthetic_store, tmp_path):
    def lists(seed, out):
        run(
            synthetic_store,
            FitConfig(
                head="core", head_options={"epochs": 2}, seeds=[seed], progress=False, final_model=False
            ),
            out,
        )
        return list(csv.DictReader(open(out / "exemplars.csv")))

    first, again, other = lists(0, tmp_path / "a"), lists(0, tmp_path / "b"), lists(1, tmp_path / "c")
    assert len(first) == 30 and all(len(row["exemplars"].split()) == 10 for row in first)
    test_ids = {row["id"] for row in first}
    assert not test_ids & {
        vid for row in first for vid in row["exemplars"].split()
    }  # exemplars come from train
    assert first == again and first != other
