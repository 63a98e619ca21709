"""aqa-compare: real aqa-fit runs side by side, mean ± std recomputed from every seed, in three formats."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from aqa_pipeline.cli.compare import main
from aqa_pipeline.synth import write_synthetic_store
from aqa_pipeline.train.run import FitConfig, run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    store = write_synthetic_store(root / "s.h5", kind="pooled", n_train=60, n_test=0, dim=8, length=(4, 8))
    for head in ("ridge", "svr"):
        config = FitConfig(head=head, cv=3, seeds=[0, 1, 2], progress=False, final_model=False)
        run(store, config, root / head)
    return root / "ridge", root / "svr"


def test_table_markdown_and_csv_hold_every_run(two_runs, tmp_path):
    ridge = json.loads((two_runs[0] / "metrics.json").read_text())["cv"]["per_seed"]
    rhos = [seed["spearman"] for seed in ridge]
    expected = f"{np.mean(rhos):.3f} ± {np.std(rhos, ddof=1):.3f}"

    table = CliRunner().invoke(main, [str(r) for r in two_runs])
    assert table.exit_code == 0, table.output
    ridge_line = next(line for line in table.output.splitlines() if line.startswith("ridge"))
    assert "3-fold CV" in ridge_line and "honest" in ridge_line and expected in ridge_line

    out = tmp_path / "cmp"
    markdown = CliRunner().invoke(main, [*map(str, two_runs), "--format", "markdown", "--out", str(out)])
    lines = markdown.stdout.strip().splitlines()
    assert lines[0].startswith("| run | head | target | evaluation") and lines[1].startswith("| --- |")
    assert len(lines) == 4 and (out / "compare.md").read_text().strip() == markdown.stdout.strip()
    assert (out / "compare.png").stat().st_size > 0

    rows = list(csv.DictReader(io.StringIO((out / "compare.csv").read_text())))
    by_run = {row["run"]: row for row in rows}
    assert set(by_run) == {"ridge", "svr"} and by_run["svr"]["seeds"] == "3"
    assert float(by_run["ridge"]["spearman_mean"]) == pytest.approx(np.mean(rhos), abs=1e-5)
    spearman = [float(row["spearman_mean"]) for row in rows]
    assert spearman == sorted(spearman, reverse=True)  # best first


def test_json_and_a_clear_error_for_a_folder_that_is_no_run(two_runs, tmp_path):
    listed = json.loads(CliRunner().invoke(main, [*map(str, two_runs), "--json"]).output)
    assert {r["head"] for r in listed} == {"ridge", "svr"} and all(
        len(r["per_seed"]["spearman"]) == 3 for r in listed
    )
    result = CliRunner().invoke(main, [str(two_runs[0]), str(tmp_path)])
    assert result.exit_code == 1 and "is not an aqa-fit run directory" in result.output
