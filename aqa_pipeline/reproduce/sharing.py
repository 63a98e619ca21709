"""Honest numbers read from the paper-protocol run's own fits, where the two runs would train the same fits.

Under the paper protocol a head trains on every training video and scores the evaluated videos after each epoch,
keeping the best epoch. A head whose honest run carves no validation split, keeps its last epoch and never stops
early (GDLT and weight-score at their defaults) trains exactly those fits: the same videos, seed and schedule,
and scoring the evaluated videos touches neither the weights nor the random streams. So its honest Spearman ρ is
the paper run's ρ at the last epoch, which ``history.json`` records for every fit, and the table reads it there
instead of training the same fits a second time. Nothing of the evaluated videos chose that epoch: it is the last
one of the schedule, fixed before training.

Only the whole evaluated split's ρ is recorded per epoch, and in the head's working units, so a row that needs
another metric (RG's per-apparatus ρ), or a run whose points are not an increasing map of the working units
(``--use-dd`` multiplies by each dive's difficulty), still trains its own honest run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from aqa_pipeline.reproduce.papers import PaperNumber
from aqa_pipeline.reproduce.plan import HeadRun

SELECTION = "last epoch, trained on every training video (read from the paper-protocol run: the same fits)"


def honest_from_paper(run: HeadRun, target: str, numbers: list[PaperNumber], fit_args: list[str]) -> bool:
    """Whether ``run``'s honest cell for ``target`` is the paper run's last epoch; ``fit_args`` are the
    arguments both aqa-fit runs get beyond the protocol (the plan's, then the ``--set`` options)."""
    from aqa_pipeline.cli.fit import parse_set
    from aqa_pipeline.heads.registry import get_head

    if any(n.metric != "spearman" for n in numbers if n.head == run.head and n.target == target):
        return False
    flags = fit_args[::2]
    if any(flag != "--set" for flag in flags) or len(fit_args) % 2:
        return False  # --use-dd, --val-fraction, ...: the honest run may differ
    head_cls = get_head(run.head)
    if not head_cls.uses_validation or head_cls.default_val_fraction != 0:
        return False
    options = head_cls.parse_options(parse_set(tuple(fit_args[1::2])))
    return getattr(options, "selection", None) == "best_val" and getattr(options, "patience", 0) is None


def last_epoch_spearman(paper_run: Path) -> tuple[float, ...]:
    """Per seed, the mean over its fits of the evaluated videos' ρ at their last epoch (nan for a seed with a fit
    not evaluated there), as an honest run's ``spearman`` is the mean of its fits' ρ."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for fit in json.loads((paper_run / "history.json").read_text()):
        epochs, evaluated = len(fit["train_loss"]), fit["val_epochs"]
        last = fit["val_spearman"][-1] if evaluated and evaluated[-1] == epochs else float("nan")
        by_seed[fit["seed"]].append(last)
    return tuple(float(np.mean(values)) for _, values in sorted(by_seed.items()))
