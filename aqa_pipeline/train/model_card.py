"""The model card beside ``model.pt``: what a shared run is, in ``model.json`` (for ``aqa-score``) and ``README.md``
(for the person it was shared with).

A run directory is the model, and runs get shared. Whoever receives one needs to know what it scores (dataset,
target, units), how it was trained (head, options), how well it does and by which protocol (metrics, folds,
seeds), and which features it needs (the feature recipe: encoder, preset, weights hash per kind) — the last is
what ``aqa-score`` reads to extract exactly those features from a new video.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CARD_NAME = "model.json"


class ModelCardError(ValueError):
    """``model.json`` is missing or is not a card of ours."""


@dataclass(frozen=True)
class ModelCard:
    head: str
    target: str
    dataset: str
    options: dict[str, Any]  # every head option, resolved
    primary_feature: str
    extras: dict[str, str]  # role → kind
    feature_recipe: dict[str, dict[str, Any]]  # kind → its provenance in the training store
    metrics: dict[str, Any]  # the evaluated split's means (and stds) over seeds
    protocol: str
    selection: str
    seeds: list[int]
    folds: int | None  # CV folds, None for a train/test split
    ensemble: int  # seeds averaged per model (1: a single head)
    final_model: dict[str, Any]  # how the saved model trained: videos, refit (and its epochs)
    label_transform: dict[str, Any]
    created: str
    package_version: str

    def write(self, run_dir: Path) -> None:
        (run_dir / CARD_NAME).write_text(json.dumps(asdict(self), indent=2, default=str))
        (run_dir / "README.md").write_text(self.readme())

    @classmethod
    def read(cls, run_dir: Path) -> ModelCard:
        path = run_dir / CARD_NAME
        if not path.is_file():
            raise ModelCardError(f"{run_dir}: no {CARD_NAME} (not a model written by aqa-fit 0.1 or later)")
        values = json.loads(path.read_text())
        missing = {f.name for f in fields(cls)} - set(values)
        if missing:
            raise ModelCardError(f"{path}: missing {sorted(missing)}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def readme(self) -> str:
        split = "test split" if self.folds is None else f"{self.folds}-fold cross-validation"
        numbers = {
            k: v for k, v in self.metrics.items() if isinstance(v, (int, float)) and not k.endswith("_std")
        }
        metric_lines = [
            f"| {name} | {value:.4g} | {self.metrics.get(f'{name}_std', float('nan')):.3g} |"
            for name, value in numbers.items()
        ]
        recipe_lines = [
            f"- `{kind}`: encoder `{p.get('encoder')}`, weights sha256 `{p.get('weights_sha256') or 'unrecorded'}`"
            for kind, p in self.feature_recipe.items()
        ]
        options = ", ".join(f"`{k}={v}`" for k, v in sorted(self.options.items()))
        return "\n".join(
            [
                f"# {self.head} · {self.dataset} · {self.target}",
                "",
                f"Scores **{self.target}** of **{self.dataset}** videos with the `{self.head}` head "
                f"(aqa-pipeline {self.package_version}, {self.created}).",
                "",
                "```",
                "aqa-score VIDEO --model THIS_FOLDER",
                "```",
                "",
                "## Evaluation",
                f"Protocol: {self.protocol}, {split}, seeds {self.seeds}"
                f"{f', each model an ensemble of {self.ensemble} seeds' if self.ensemble > 1 else ''}. "
                f"Selection: {self.selection}.",
                f"The saved model trained on {self.final_model.get('videos', '?')} training videos"
                f"{f' for {e} epochs (refit: the folds median best epoch)' if (e := self.final_model.get('epochs')) else ''}.",
                "",
                "| metric | mean | std over seeds |",
                "|---|---|---|",
                *metric_lines,
                "",
                "## Features it needs",
                *recipe_lines,
                "",
                "## Options",
                options,
                "",
            ]
        )


def card_for_run(
    inputs: dict[str, Any], fit: dict[str, Any], metrics: dict[str, Any], transform: dict
) -> ModelCard:
    """The card of a finished run from what ``write_run_dir`` already holds (run.json inputs, resolved fit)."""
    split = metrics.get("test") or metrics.get("cv") or {}
    return ModelCard(
        head=fit["head"],
        target=fit["target"],
        dataset=inputs["dataset"],
        options=fit["head_options"],
        primary_feature=inputs["primary_feature"],
        extras=inputs["extras"],
        feature_recipe=inputs["provenance"],
        metrics={k: v for k, v in split.items() if k != "per_seed"},
        protocol=metrics.get("protocol", fit["protocol"]),
        selection=metrics.get("selection", ""),
        seeds=list(fit["seeds"]),
        folds=fit["cv"],
        ensemble=fit["ensemble"],
        final_model=metrics.get("final_model", {}),
        label_transform=transform,
        created=datetime.date.today().isoformat(),
        package_version=inputs["package_version"],
    )
