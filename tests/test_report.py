"""The explanation report renders any head's arrays and ranks videos by error (on a fabricated aqa-fit run)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from aqa_pipeline.cli.report import main as report_cli
from aqa_pipeline.report.explain import clip_seconds, load_run, write_report


def _fabricate_run(run_dir, provenance=None):
    """A run directory in aqa-fit's format: weight-score-like, GDLT-like and TPT-like explanation arrays."""
    rng = np.random.default_rng(0)
    truth = {"v_small": 50.0, "v_big": 40.0, "v_mid": 30.0, "v/odd id": 20.0}
    prediction = {"v_small": 51.0, "v_big": 60.0, "v_mid": 35.0, "v/odd id": 18.0}  # errors 1, 20, 5, 2
    (run_dir / "explanations").mkdir(parents=True)
    with open(run_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "fold", "seed", "id", "truth", "prediction"])
        for vid in truth:
            writer.writerow(["test", 0, 0, vid, truth[vid], prediction[vid]])
    arrays = {
        "v_small": {"weights": rng.dirichlet(np.ones(30)), "clip_scores": rng.normal(size=30)},
        "v_big": {"grades": rng.dirichlet(np.ones(4)), "attention": rng.dirichlet(np.ones(25), size=4)},
        "v_mid": {"attention": rng.dirichlet(np.ones(20), size=8)},  # e.g. TPT: parts × clips
    }
    for vid, explanation in arrays.items():
        np.savez(
            run_dir / "explanations" / f"{vid}.npz",
            truth=truth[vid],
            prediction=prediction[vid],
            **explanation,
        )
    config = {"fit": {"head": "weight-score", "target": "tes"}}  # as aqa-fit writes it
    if provenance is not None:
        config["provenance"] = provenance
    (run_dir / "config.json").write_text(json.dumps(config))
    return truth


def test_report_renders_and_sorts_by_error(tmp_path):
    run = tmp_path / "run"
    _fabricate_run(run, provenance={"vst": {"encoder": "swin", "clip_len": 32, "fps": 25}})
    index = write_report(run, tmp_path / "out")
    page = index.read_text()
    order = [page.index(f"<td>{vid}</td>") for vid in ("v_big", "v_mid", "v/odd id", "v_small")]
    assert order == sorted(order), "index must list videos worst error first"
    pngs = sorted(p.name for p in (tmp_path / "out" / "videos").glob("*.png"))
    assert pngs == ["v_big.png", "v_mid.png", "v_small.png"]  # the video without explanations gets no plot
    assert all((tmp_path / "out" / "videos" / p).stat().st_size > 5000 for p in pngs)
    linked = re.findall(r'href="(videos/[^"]+\.png)"', page)
    assert sorted(linked) == sorted(f"videos/{p}" for p in pngs)
    assert "1.28 s per clip" in page
    assert "Explanations: weight-score" in page and "Target: tes" in page


def test_time_axis_from_provenance():
    assert clip_seconds({"clip_len": 32, "fps": 25}) == pytest.approx(1.28)
    assert clip_seconds({"i3d": {"clip_len": 16, "stride": 8, "fps": 25.0}}) == pytest.approx(0.32)
    assert clip_seconds({"encoder": "x"}) is None
    assert clip_seconds(None) is None


def test_cli_writes_default_report_dir(tmp_path):
    run = tmp_path / "run"
    _fabricate_run(run)
    result = CliRunner().invoke(report_cli, [str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "index.html").is_file()
    assert "clip index" in (run / "report" / "index.html").read_text()
    assert "report: 100%" in result.stderr and "4/4" in result.stderr  # progress over the videos
    quiet = CliRunner().invoke(report_cli, [str(run), "--quiet", "--json"])
    assert quiet.stderr == "" and json.loads(quiet.stdout)["index"] == str(run / "report" / "index.html")


def test_explained_prediction_is_the_one_ranked(tmp_path):
    run = tmp_path / "run"
    _fabricate_run(run)
    videos, config = load_run(run)
    by_id = {v.id: v for v in videos}
    assert by_id["v_big"].error == pytest.approx(20.0)
    assert set(by_id["v_big"].arrays) == {"grades", "attention"}
    assert config["fit"]["head"] == "weight-score"


def test_bad_predictions_file_names_the_problem(tmp_path):
    (tmp_path / "predictions.csv").write_text("id,truth\nv1,3\n")
    with pytest.raises(ValueError, match="missing columns"):
        write_report(tmp_path)
    result = CliRunner().invoke(report_cli, [str(tmp_path / "nowhere")])
    assert result.exit_code != 0
