"""The committed experiment configs stay runnable as heads and options change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aqa_pipeline.train.checks import check_fit_config
from aqa_pipeline.train.fitting import FitConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_committed_configs():
    assert len(CONFIGS) >= 4, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_a_committed_config_passes_aqa_fits_checks(path):
    """What ``aqa-fit --config`` checks before loading anything: known keys, protocol settings, head options."""
    config = FitConfig.from_dict(yaml.safe_load(path.read_text()))
    check_fit_config(config)
    # make fisv-tuned reads the head and the target from the file name
    assert path.stem == f"{config.head}-{config.target}"
