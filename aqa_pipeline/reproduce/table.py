"""``TABLE.md`` and ``table.csv``: for each head and metric of a dataset's papers, our number under the honest
protocol, ours under the papers' protocol (best epoch on the scored videos), and the paper's, with its source.

Our cells are mean ± std over seeds, read from each run's ``metrics.json`` per-seed values (or, where the honest
run would be the paper run's own fits, from that run's last epoch: :mod:`.sharing`); the papers' come from
``paper_numbers.yaml`` only.
"""

from __future__ import annotations

import csv
import json
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from aqa_pipeline.report.compare import load_summary
from aqa_pipeline.reproduce.papers import PaperNumber
from aqa_pipeline.reproduce.plan import DatasetPlan, HeadRun
from aqa_pipeline.reproduce.sharing import SELECTION, honest_from_paper, last_epoch_spearman
from aqa_pipeline.reproduce.stages import Layout, Settings, fit_options

NO_NUMBER = "no published number in paper_numbers.yaml"
COLUMNS = (
    "head", "target", "metric", "features", "evaluation", "honest selection",
    "ours honest", "ours paper-protocol", "paper's number", "source", "note",
)  # fmt: skip


@dataclass(frozen=True)
class TableRow:
    head: str
    target: str
    metric: str
    features: str
    evaluation: str
    selection: str  # how the honest run chose its epoch (its metrics.json "selection")
    honest: str
    paper_protocol: str
    paper: str
    source: str
    note: str


@dataclass(frozen=True)
class RunCell:
    """One run's metric over its seeds, how it was evaluated, and how it chose its epoch."""

    values: tuple[float, ...]
    evaluation: str
    selection: str

    def text(self) -> str:
        finite = [v for v in self.values if np.isfinite(v)]
        if not finite:
            return "n/a"
        if len(finite) == 1:  # no spread to show
            return f"{finite[0]:.3f} (1 seed)"
        return f"{np.mean(finite):.3f} ± {np.std(finite, ddof=1):.3f} ({len(finite)} seeds)"


def _lookup(metrics: dict, path: str) -> float:
    value: object = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return float("nan")
        value = value[key]
    return float(value)


def read_cell(run_dir: Path, metric: str) -> RunCell:
    """``metric`` (a dotted path) of every seed of a finished run; nan where a seed lacks it. The evaluation is
    named as ``aqa-compare`` names it (``test`` or ``K-fold CV``)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_seed = metrics["test" if "test" in metrics else "cv"]["per_seed"]
    values = tuple(_lookup(seed, metric) for seed in per_seed)
    return RunCell(values, load_summary(run_dir).evaluation, metrics.get("selection", ""))


def _rows_of(
    run: HeadRun, target: str, numbers: list[PaperNumber], layout: Layout, settings: Settings
) -> list[TableRow]:
    theirs = [n for n in numbers if n.head == run.head and n.target == target]
    wanted = [(n.metric, f"{n.value:g}", n.source()) for n in theirs]
    if not any(n.metric == "spearman" for n in theirs):  # the whole scored split's ρ, always shown first
        wanted.insert(0, ("spearman", "—", NO_NUMBER))
    features = run.features.name
    shared = not run.not_run and honest_from_paper(run, target, numbers, fit_options(run, settings))
    rows = []
    for metric, paper, source in wanted:
        if run.not_run:
            rows.append(TableRow(run.head, target, metric, features, "—", "—", "not run", "not run", paper,
                                 source, run.not_run))  # fmt: skip
            continue
        optimistic = read_cell(layout.run_dir(run, target, "paper"), metric)
        honest = (
            RunCell(
                last_epoch_spearman(layout.run_dir(run, target, "paper")), optimistic.evaluation, SELECTION
            )
            if shared
            else read_cell(layout.run_dir(run, target, "honest"), metric)
        )
        rows.append(TableRow(run.head, target, metric, features, honest.evaluation, honest.selection,
                             honest.text(), optimistic.text(), paper, source, run.variant))  # fmt: skip
    return rows


def build_rows(
    plan: DatasetPlan, numbers: list[PaperNumber], layout: Layout, settings: Settings
) -> list[TableRow]:
    return [
        row
        for run in plan.heads
        for target in run.targets
        for row in _rows_of(run, target, numbers, layout, settings)
    ]


def write_table(rows: list[TableRow], dataset: str, layout: Layout) -> tuple[Path, Path]:
    """TABLE.md (with what the protocols mean) and table.csv (the same cells), atomically each."""
    header = "| " + " | ".join(COLUMNS) + " |"
    lines = [
        f"# {dataset}: the seed papers' numbers beside ours",
        "",
        "ours honest: nothing of the scored videos is used; 'honest selection' says how each run chose its "
        "epoch (a validation split carved from the training videos, the last epoch, or the inner CV of the "
        "closed-form heads). "
        "ours paper-protocol: best epoch on the scored videos, as the papers' code does (optimistic). "
        "Ours are mean ± std over seeds on frozen features: CoRe, TPT, USDL/MUSDL and TSA fine-tuned I3D end "
        "to end, so ours are expected below theirs. Numbers marked [recalled] are unverified against the paper.",
        "",
        header,
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(astuple(row)) + " |" for row in rows),
    ]
    markdown = _atomic_write(layout.root / "TABLE.md", "\n".join(lines) + "\n")
    csv_path = layout.root / "table.csv"
    partial = csv_path.with_name(csv_path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(astuple(row) for row in rows)
    partial.replace(csv_path)
    return markdown, csv_path


def _atomic_write(path: Path, text: str) -> Path:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
