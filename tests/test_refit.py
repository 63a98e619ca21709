"""--refit epochs: the saved model trains on every training video for the median of the folds' best epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.checks import check_fit_config
from aqa_pipeline.train.run import FitConfig, run

torch.set_num_threads(1)
TINY = {"q_number": 4, "window": None, "d_model": 16, "ffn": 32, "dropout": 0.1, "epochs": 6, "batch_size": 8}


@pytest.fixture
def fits(monkeypatch):
    """Every fit of weight-score: (training videos, whether it had a validation split, its epochs)."""
    calls = []
    head_cls = get_head("weight-score")
    original = head_cls.fit

    def spy(self, train, val=None, **options):
        calls.append((len(train), val is not None, self.options.epochs))
        return original(self, train, val, **options)

    monkeypatch.setattr(head_cls, "fit", spy)
    return calls


def test_the_refit_sees_every_training_video_for_the_folds_median_epoch(tmp_path, fits):
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=36, n_test=12, dim=8, length=(8, 12)
    )
    config = FitConfig(
        head="weight-score", head_options=TINY, cv=3, val_fraction=0.15, refit="epochs", progress=False
    )
    result = run(store, config)
    *folds, final = fits
    assert len(folds) == 3 and all(n < 36 and with_val for n, with_val, _ in folds)
    best = [c.history.best_epoch for c in result.histories]
    assert final == (36, False, max(1, int(np.median(best))))
    assert result.metrics["final_model"] == {
        "videos": 36, "refit": "epochs", "epochs": final[2], "fold_best_epochs": best,
    }  # fmt: skip


def test_without_refit_the_saved_model_holds_out_its_validation_carve(tmp_path, fits):
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=36, n_test=12, dim=8, length=(8, 12)
    )
    result = run(store, FitConfig(head="weight-score", head_options=TINY, val_fraction=0.15, progress=False))
    n, with_val, epochs = fits[-1]
    assert n < 36 and with_val and epochs == TINY["epochs"]
    assert result.metrics["final_model"] == {"videos": n, "refit": None}


@pytest.mark.parametrize(
    ("options", "val_fraction"),
    [({"selection": "last"}, 0.15), ({}, 0.0), ({}, None)],
    ids=["selection-last", "no-carve", "head-default"],
)
def test_a_fit_that_does_not_select_epochs_trains_on_every_training_video(
    tmp_path, fits, options, val_fraction
):
    """``--set selection=last``, ``--val-fraction 0`` or weight-score's default: no carve, in the folds and for
    the saved model."""
    store = write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=36, n_test=12, dim=8, length=(8, 12)
    )
    config = FitConfig(
        head="weight-score", head_options={**TINY, **options}, cv=3, val_fraction=val_fraction, progress=False
    )
    result = run(store, config)
    assert [(n, with_val) for n, with_val, _ in fits] == [(24, False)] * 3 + [(36, False)]
    assert result.metrics["selection"] == "last epoch, trained on every training video"
    assert result.metrics["final_model"] == {"videos": 36, "refit": None}


def test_refit_is_checked_before_any_data():
    with pytest.raises(ValueError, match="refit='always'"):
        check_fit_config(FitConfig(head="ridge", refit="always"))


def test_the_validation_carve_defaults_to_the_heads_own():
    """gdlt, weight-score and action-net keep their last epoch; the other neural heads carve 15%; a given share wins."""
    assert FitConfig(head="gdlt").val_fraction == FitConfig(head="weight-score").val_fraction == 0.0
    assert FitConfig(head="action-net").val_fraction == 0.0
    assert FitConfig(head="tpt").val_fraction == FitConfig(head="mlp").val_fraction == 0.15
    assert FitConfig(head="gdlt", val_fraction=0.2).val_fraction == 0.2
