"""``aqa-compare``: the runs of stage two side by side — head, target, evaluation, seeds, each metric's mean ± std
over seeds and the time taken — as a terminal table, Markdown or CSV, plus one plot.

Means and stds are recomputed from each run's ``per_seed`` metrics, so every run is summarised the same way.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS = ("spearman", "pearson", "mse", "rl2")
FORMATS = ("table", "markdown", "csv")


@dataclass
class RunSummary:
    name: str
    head: str
    target: str
    evaluation: str  # "test" or "K-fold CV"
    protocol: str
    seeds: int
    per_seed: dict[str, list[float]]  # metric -> one value per seed
    seconds: float

    def mean(self, metric: str) -> float:
        return float(np.mean(self.per_seed[metric]))

    def std(self, metric: str) -> float:
        values = self.per_seed[metric]
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def load_summary(run_dir: str | Path) -> RunSummary:
    """One run directory's summary; a clear error when it is not a finished ``aqa-fit`` run."""
    run_dir = Path(run_dir)
    paths = {name: run_dir / f"{name}.json" for name in ("config", "metrics")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not an aqa-fit run directory (missing {', '.join(missing)})")
    config = json.loads(paths["config"].read_text())
    metrics = json.loads(paths["metrics"].read_text())
    split = "test" if "test" in metrics else "cv"
    if split not in metrics or "per_seed" not in metrics[split]:
        raise ValueError(f"{paths['metrics']}: no per-seed metrics of a test or cv split")
    rows = metrics[split]["per_seed"]
    return RunSummary(
        name=run_dir.name,
        head=config.get("head", "?"),
        target=config.get("target", "?"),
        evaluation="test" if split == "test" else f"{config.get('cv') or 5}-fold CV",
        protocol=metrics.get("protocol", config.get("protocol", "?")),
        seeds=len(rows),
        per_seed={m: [float(r[m]) for r in rows] for m in METRICS if m in rows[0]},
        seconds=float(metrics.get("seconds", float("nan"))),
    )


def table_rows(runs: list[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison, metrics as ``mean ± std``."""
    header = ["run", "head", "target", "evaluation", "protocol", "seeds", *METRICS, "seconds"]
    rows = [
        [
            r.name,
            r.head,
            r.target,
            r.evaluation,
            r.protocol,
            str(r.seeds),
            *[f"{r.mean(m):.3f} ± {r.std(m):.3f}" if m in r.per_seed else "–" for m in METRICS],
            f"{r.seconds:.1f}",
        ]
        for r in runs
    ]
    return header, rows


def render(runs: list[RunSummary], fmt: str) -> str:
    """The comparison as an aligned terminal table, a Markdown table, or CSV (mean and std in their own columns)."""
    if fmt == "csv":
        return _csv(runs)
    header, rows = table_rows(runs)
    if fmt == "markdown":
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *rows]
    )


def _csv(runs: list[RunSummary]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    metric_columns = [f"{m}_{part}" for m in METRICS for part in ("mean", "std")]
    writer.writerow(["run", "head", "target", "evaluation", "protocol", "seeds", *metric_columns, "seconds"])
    for r in runs:
        values = [f"{f(m):.6g}" if m in r.per_seed else "" for m in METRICS for f in (r.mean, r.std)]
        writer.writerow(
            [r.name, r.head, r.target, r.evaluation, r.protocol, r.seeds, *values, f"{r.seconds:.2f}"]
        )
    return buffer.getvalue()


def plot_runs(runs: list[RunSummary], path: Path, metric: str = "spearman") -> None:
    """One bar per run (mean over seeds, ± std) with each seed's value as a dot."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(runs)), 4.0), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(runs))
    ax.bar(x, [r.mean(metric) for r in runs], yerr=[r.std(metric) for r in runs], capsize=4, alpha=0.7)
    for i, r in enumerate(runs):
        ax.scatter(np.full(len(r.per_seed[metric]), i), r.per_seed[metric], color="black", s=10, zorder=3)
    ax.set_xticks(x, [f"{r.name}\n{r.head} · {r.target}" for r in runs], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    figure.savefig(path, dpi=110)
