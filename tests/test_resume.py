"""aqa-fit --resume: an interrupted run fits only what it had not finished, a finished run grows by seeds, and
the finished fits (``fits/``) are reused only under the settings that made them, never unpickled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline.cli.fit import main as fit_cli
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train import engines
from aqa_pipeline.train.journal import JournalError
from aqa_pipeline.train.run import FitConfig, run
from aqa_pipeline.train.rundir import RunDirError

torch.set_num_threads(1)
TINY = {"q_number": 4, "window": None, "d_model": 16, "ffn": 32, "dropout": 0.1, "epochs": 4, "batch_size": 8}


class Interrupted(Exception):
    """Stands for a Ctrl-C or a killed job in the middle of a run."""


@pytest.fixture
def store(tmp_path):
    return write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=30, n_test=0, dim=8, length=(8, 12)
    )


@pytest.fixture
def fitted(monkeypatch):
    """The fits actually trained, as "seed/fold"; ``fitted.stop_after = N`` interrupts the run after N fits."""
    calls: list[str] = []
    original = engines.fit_task

    def spy(task, *args, **kwargs):
        if len(calls) == spy.stop_after:
            raise Interrupted
        calls.append(task.run_name)
        return original(task, *args, **kwargs)

    spy.stop_after = None
    spy.calls = calls
    monkeypatch.setattr(engines, "fit_task", spy)
    return spy


def _config(seeds, **options) -> FitConfig:
    return FitConfig(
        head="weight-score",
        cv=3,
        seeds=seeds,
        head_options={**TINY, **options},
        final_model=False,
        progress=False,
    )


def _outputs(run_dir):
    """What a finished run says: its metrics (less the time taken), predictions and explanations."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("seconds"), metrics.pop("fits_reused", None)
    explanations = {
        path.name: dict(np.load(path)) for path in sorted((run_dir / "explanations").glob("*.npz"))
    }
    return metrics, (run_dir / "predictions.csv").read_text(), explanations


def _assert_same(a, b):
    (metrics_a, predictions_a, explanations_a), (metrics_b, predictions_b, explanations_b) = a, b
    assert metrics_a == metrics_b and predictions_a == predictions_b
    assert explanations_a.keys() == explanations_b.keys()
    for name, arrays in explanations_a.items():
        assert arrays.keys() == explanations_b[name].keys()
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, explanations_b[name][key], err_msg=f"{name}: {key}")


def test_an_interrupted_run_resumes_with_only_the_fits_it_had_not_finished(store, tmp_path, fitted):
    out = tmp_path / "run"
    fitted.stop_after = 4
    with pytest.raises(Interrupted):
        run(store, _config([0, 1]), out)
    assert not (out / "metrics.json").exists()  # not finished, and not mistaken for finished
    assert sorted(p.name for p in (out / "fits").glob("*.npz")) == [
        "seed0-fold0.npz", "seed0-fold1.npz", "seed0-fold2.npz", "seed1-fold0.npz",
    ]  # fmt: skip
    fitted.stop_after, fitted.calls[:] = None, []
    with pytest.raises(RunDirError, match="--resume"):
        run(store, _config([0, 1]), out)  # a rerun without --resume must not silently mix or wipe
    result = run(store, _config([0, 1]), out, resume=True)
    assert fitted.calls == ["seed1/fold1", "seed1/fold2"]
    assert result.metrics["fits_reused"] == 4
    fitted.calls[:] = []
    run(store, _config([0, 1]), tmp_path / "uninterrupted")
    assert len(fitted.calls) == 6
    _assert_same(_outputs(out), _outputs(tmp_path / "uninterrupted"))


def test_more_seeds_fit_only_the_new_seeds(store, tmp_path, fitted):
    out = tmp_path / "run"
    one = run(store, _config([0]), out)
    fitted.calls[:] = []
    three = run(store, _config([0, 1, 2]), out, resume=True)
    assert fitted.calls == [f"seed{s}/fold{f}" for s in (1, 2) for f in range(3)]
    assert three.metrics["cv"]["per_seed"][0] == one.metrics["cv"]["per_seed"][0]
    run(store, _config([0, 1, 2]), tmp_path / "fresh")
    _assert_same(_outputs(out), _outputs(tmp_path / "fresh"))


def test_resume_refuses_other_settings_naming_them_and_leaves_the_run_intact(store, tmp_path, fitted):
    out = tmp_path / "run"
    run(store, _config([0]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    fitted.calls[:] = []
    with pytest.raises(JournalError, match=r"head_options\.epochs: 4 → 5") as error:
        run(store, _config([0], epochs=5), out, resume=True)
    assert "\n" not in str(error.value) and fitted.calls == []
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    run(store, _config([0], epochs=4), out, resume=True)  # the same settings spelled out: reused
    assert fitted.calls == []


def test_fits_kept_before_an_option_existed_are_reused_at_its_default(store, tmp_path, fitted):
    """A run made before ``precision`` existed resumes after the upgrade without refitting; bf16 is refused."""
    out = tmp_path / "run"
    run(store, _config([0]), out)
    kept = out / "fits" / "settings.json"
    settings = json.loads(kept.read_text())
    del settings["fit"]["head_options"]["precision"]
    kept.write_text(json.dumps(settings))
    fitted.calls[:] = []
    run(store, _config([0, 1]), out, resume=True)
    assert fitted.calls == [f"seed1/fold{f}" for f in range(3)]
    with pytest.raises(JournalError, match=r"head_options\.precision: fp32 → bf16"):
        run(store, _config([0, 1], precision="bf16"), out, resume=True)


class _Payload:
    """Would leave a file behind if anything unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_or_damaged_entry_is_refused_and_never_unpickled(store, tmp_path, fitted):
    out = tmp_path / "run"
    fitted.stop_after = 1
    with pytest.raises(Interrupted):
        run(store, _config([0]), out)
    entry = out / "fits" / "seed0-fold0.npz"
    arrays = dict(np.load(entry))
    marker = tmp_path / "unpickled"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    np.savez(entry, **{**arrays, "prediction": payload})
    fitted.stop_after = None
    with pytest.raises(JournalError, match="seed0-fold0.npz: unreadable finished fit"):
        run(store, _config([0]), out, resume=True)
    assert not marker.exists()
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with pytest.raises(JournalError, match="delete it to refit it"):
        run(store, _config([0]), out, resume=True)
    entry.unlink()
    run(store, _config([0]), out, resume=True)
    assert (out / "metrics.json").is_file()


def test_the_cli_resumes_and_refuses_resume_where_it_means_nothing(store, tmp_path):
    out = tmp_path / "run"
    args = ["--head", "ridge", str(store), "--cv", "3", "--out", str(out), "--no-final-model", "--quiet"]
    runner = CliRunner()
    assert runner.invoke(fit_cli, args).exit_code == 0
    again = runner.invoke(fit_cli, args)
    assert again.exit_code != 0 and "--resume" in again.output
    resumed = runner.invoke(fit_cli, [*args, "--resume", "--seeds", "2", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["fits_reused"] == 3
    both = runner.invoke(fit_cli, [*args, "--resume", "--overwrite"])
    assert both.exit_code != 0 and "give one of them" in both.output
    tuned = runner.invoke(fit_cli, [*args, "--resume", "--tune", "2"])
    assert tuned.exit_code == 2 and "--tune resumes by rerunning" in tuned.output
