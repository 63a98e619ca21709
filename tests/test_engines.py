"""Where fits run (``aqa-fit --jobs N``, ``--engine ray``) changes the time, not the numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline.cli.fit import main as fit_main
from aqa_pipeline.heads.base import History
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.engines import EngineChoice
from aqa_pipeline.train.run import FitConfig, run
from aqa_pipeline.train.tracking import log_history

torch.set_num_threads(1)
TINY_WEIGHT_SCORE = {"q_number": 4, "window": None, "d_model": 16, "ffn": 32, "epochs": 4, "batch_size": 8}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("engines") / "s.h5"
    return write_synthetic_store(path, kind="sparse", n_train=40, n_test=0, dim=8, length=(8, 12))


def _predictions(result) -> list[tuple]:
    return [(p.seed, p.fold, p.id, p.truth, p.prediction) for p in result.predictions]


def test_worker_processes_give_the_in_process_numbers(store):
    config = FitConfig(
        head="weight-score", head_options=TINY_WEIGHT_SCORE, cv=4, seeds=[0, 1], progress=False,
        final_model=False,
    )  # fmt: skip
    here = run(store, config)
    parallel = run(store, config, engine=EngineChoice(jobs=2, threads=1))
    assert [p[:3] for p in _predictions(parallel)] == [p[:3] for p in _predictions(here)]  # plan order
    assert [p[4] for p in _predictions(parallel)] == pytest.approx(
        [p[4] for p in _predictions(here)], abs=1e-5
    )
    assert parallel.metrics["cv"]["spearman"] == pytest.approx(here.metrics["cv"]["spearman"], abs=1e-6)
    losses = [loss for c in here.histories for loss in c.history.train_loss]
    assert [loss for c in parallel.histories for loss in c.history.train_loss] == pytest.approx(
        losses, abs=1e-6
    )


PARENT = """
import os, sys, time
from aqa_pipeline.train.engines import ProcessEngine
from aqa_pipeline.train.fitting import FitConfig
engine = ProcessEngine(sys.argv[1], FitConfig(head="ridge"), jobs=1, threads=1)
print(engine.pool.submit(os.getpid).result(), flush=True)
busy = engine.pool.submit(time.sleep, 120)  # a fit that would go on for two minutes
while not busy.running():
    time.sleep(0.05)
print("busy", flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may never reap the orphan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_a_worker_ends_when_aqa_fit_is_killed(store):
    """A scheduler's SIGTERM (here the harder SIGKILL) reaching only the parent must not leave its workers fitting."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(store)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline() == "busy\n" and _alive(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived aqa-fit"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_engine_is_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        EngineChoice("spark")
    with pytest.raises(ValueError, match="--ray-address needs --engine ray"):
        EngineChoice(ray_address="auto")
    result = CliRunner().invoke(fit_main, ["x.h5", "--head", "ridge", "--out", "o", "--ray-address", "a"])
    assert result.exit_code != 0


def test_a_finished_fit_is_logged_epoch_by_epoch():
    logged = []

    class Recorder:
        def log_epoch(self, run_name, epoch, values):
            logged.append((run_name, epoch, values))

    history = History(train_loss=[0.5, 0.4, 0.3], val_epochs=[2, 3], val_spearman=[0.1, 0.2])
    log_history(Recorder(), "seed0/fold1", history)
    assert logged == [
        ("seed0/fold1", 1, {"train_loss": 0.5}),
        ("seed0/fold1", 2, {"train_loss": 0.4, "val_spearman": 0.1}),
        ("seed0/fold1", 3, {"train_loss": 0.3, "val_spearman": 0.2}),
    ]


@pytest.fixture(scope="module")
def local_ray():
    import ray  # in the dev extra: CI always has it

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_cv_gives_the_local_cv_metrics(store, tmp_path, local_ray):
    """``aqa-fit --engine ray --cv 5`` (on the Ray this test started) against the local engine."""

    def fit(engine: str, out: str) -> dict:
        args = [str(store), "--head", "ridge", "--cv", "5", "--seeds", "2", "--quiet", "--json"]
        result = CliRunner().invoke(fit_main, [*args, "--engine", engine, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    local, on_ray = fit("local", "local"), fit("ray", "ray")
    for key in ("spearman", "pearson", "mse", "spearman_std"):
        assert on_ray["cv"][key] == pytest.approx(local["cv"][key], abs=1e-9)
    assert on_ray["cv"]["per_seed"] == local["cv"]["per_seed"]
    assert (tmp_path / "ray" / "model.pt").exists()


@pytest.mark.slow
def test_tuning_trials_on_ray_score_as_they_do_locally(store, tmp_path, local_ray):
    from aqa_pipeline.train.tune import tune

    config = FitConfig(head="mlp", head_options={"hidden": [16], "epochs": 4, "eval_every": 1}, cv=3)
    local = tune(store, config, 2, tmp_path / "local")
    on_ray = tune(store, config, 2, tmp_path / "ray", engine=EngineChoice("ray", threads=1))
    assert on_ray.best_options == local.best_options
    assert on_ray.best_value == pytest.approx(local.best_value, abs=1e-6)
