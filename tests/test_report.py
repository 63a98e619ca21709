"""The report: heads' explanations as contributions in points, a page per video and a sortable index, rendered
from templates with every id escaped (on a fabricated aqa-fit run whose arithmetic is known)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from aqa_pipeline.cli.report import main as report_cli
from aqa_pipeline.report.explain import clip_seconds, load_run, write_report
from aqa_pipeline.report.pages import mmss, safe_name
from aqa_pipeline.report.points import ClipTimes, score_view

SCALE, OFFSET = 40.0, 10.0  # working units → points, as a fold's minmax transform would give


def _weight_score_arrays(rng, clips=30):
    weights = rng.dirichlet(np.ones(clips))
    clip_scores = rng.uniform(0.0, 1.0, clips)
    return {"weights": weights, "clip_scores": clip_scores}, float(weights @ clip_scores)


def _gdlt_arrays(rng, grades=4, clips=25):
    responses = rng.dirichlet(np.ones(grades))
    attention = rng.dirichlet(np.ones(clips), size=grades)
    return {"grades": responses, "attention": attention}, float(responses @ np.linspace(0, 1, grades))


def _fabricate_run(run_dir, provenance=None):
    """A run directory in aqa-fit's format: weight-score-, GDLT- and TPT-like explanations, in working units
    with the fold's label scale and offset beside them, and predictions that equal the heads' arithmetic."""
    rng = np.random.default_rng(0)
    ws, ws_y = _weight_score_arrays(rng)
    gd, gd_y = _gdlt_arrays(rng)
    arrays = {
        "v_small": (ws, ws_y),
        "v_big": (gd, gd_y),
        "v_mid": ({"attention": rng.dirichlet(np.ones(20), size=8)}, 0.5),
    }
    prediction = {vid: y * SCALE + OFFSET for vid, (_, y) in arrays.items()} | {"v/<b>odd</b> id": 18.0}
    truth = {
        "v_small": prediction["v_small"] - 1,
        "v_big": prediction["v_big"] + 20,
        "v_mid": prediction["v_mid"] - 5,
        "v/<b>odd</b> id": 20.0,
    }
    (run_dir / "explanations").mkdir(parents=True)
    with open(run_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "fold", "seed", "id", "truth", "prediction"])
        for vid in truth:
            writer.writerow(["test", 0, 0, vid, truth[vid], prediction[vid]])
    for vid, (explanation, _) in arrays.items():
        np.savez(
            run_dir / "explanations" / f"{vid}.npz",
            truth=truth[vid],
            prediction=prediction[vid],
            label_scale=SCALE,
            label_offset=OFFSET,
            **explanation,
        )
    config = {"fit": {"head": "weight-score", "target": "tes"}}  # as aqa-fit writes it
    if provenance is not None:
        config["provenance"] = provenance
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "metrics.json").write_text(json.dumps({"test": {"spearman": 0.61, "rl2": 0.05, "n": 4}}))
    return truth, prediction


def test_weight_score_contributions_are_exact_in_points():
    arrays, y = _weight_score_arrays(np.random.default_rng(1))
    view = score_view(
        "weight-score", arrays, y * SCALE + OFFSET, SCALE, OFFSET, ClipTimes(seconds_per_clip=1.28)
    )
    assert view.exact and view.baseline == OFFSET
    assert view.baseline + sum(m.points for m in view.moments) == pytest.approx(view.prediction)
    assert [m.start_s for m in view.moments[:3]] == pytest.approx([0.0, 1.28, 2.56])
    top = view.top(3)
    assert len(top) == 3 and [m.index for m in top] == sorted(m.index for m in top)
    assert min(abs(m.points) for m in top) >= max(abs(m.points) for m in view.moments if m not in top)


def test_gdlt_grades_are_labelled_in_points_and_their_spread_is_exact():
    arrays, y = _gdlt_arrays(np.random.default_rng(2))
    view = score_view("gdlt", arrays, y * SCALE + OFFSET, SCALE, OFFSET)
    assert view.exact
    assert view.baseline + sum(m.points for m in view.moments) == pytest.approx(view.prediction)
    assert [g.value for g in view.grades] == pytest.approx([10.0, 10.0 + 40 / 3, 10.0 + 80 / 3, 50.0])
    assert sum(g.response for g in view.grades) == pytest.approx(1.0)
    assert all(m.start_s is None for m in view.moments)  # no times known: no times invented


def test_attention_heads_get_an_attribution_said_to_be_one():
    attention = np.random.default_rng(3).dirichlet(np.ones(12), size=5)
    view = score_view("tpt", {"attention": attention}, 30.0, SCALE, OFFSET, ClipTimes(np.arange(12) * 0.5))
    assert not view.exact and "attribution" in view.caption
    assert view.baseline + sum(m.points for m in view.moments) == pytest.approx(30.0)
    assert view.moments[-1].end_s == pytest.approx(6.0)
    raw = score_view("svr", {"something": np.ones(4)}, 30.0, SCALE, OFFSET)
    assert raw.moments == [] and "no per-clip explanation" in raw.caption and "something" in raw.series


def test_report_pages_index_and_escaping(tmp_path):
    run = tmp_path / "run"
    truth, prediction = _fabricate_run(
        run, provenance={"vst": {"encoder": "swin", "clip_len": 32, "fps": 25}}
    )
    index = write_report(run, tmp_path / "out")
    page = index.read_text()
    order = [page.index(f'data-id="{vid}"') for vid in ("v_big", "v_mid", "v_small")]
    assert order == sorted(order), "index must list videos worst error first"
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page  # ids escaped
    pages = sorted(p.name for p in (tmp_path / "out" / "videos").glob("*.html"))
    assert pages == sorted(f"{safe_name(v)}.html" for v in truth)
    linked = re.findall(r'href="(videos/[^"]+\.html)"', page)
    assert sorted(linked) == sorted(f"videos/{p}" for p in pages)
    assert "1.28 s per clip" in page and "spearman" in page and "0.61" in page
    assert 'id="filter"' in page and page.count("data-key=") == 5

    ws_page = (tmp_path / "out" / "videos" / "v_small.html").read_text()
    assert f"{prediction['v_small']:.2f}" in ws_page and f"{truth['v_small']:.2f}" in ws_page
    assert ws_page.count('class="bar ') == 30 and ws_page.count("data-t=") == 30
    assert f"= {prediction['v_small']:.2f} points" in ws_page  # baseline + Σ clips = the score
    assert "0:38.4" in ws_page  # the last clip ends at 30 × 1.28 s
    gdlt_page = (tmp_path / "out" / "videos" / "v_big.html").read_text()
    assert 'id="grades"' in gdlt_page and "50.00" in gdlt_page
    odd_page = (tmp_path / "out" / "videos" / f"{safe_name('v/<b>odd</b> id')}.html").read_text()
    assert "<b>odd</b>" not in odd_page and "no per-clip explanation" in odd_page


def test_time_axis_from_provenance_and_mmss():
    assert clip_seconds({"clip_len": 32, "fps": 25}) == pytest.approx(1.28)
    assert clip_seconds({"i3d": {"clip_len": 16, "stride": 8, "fps": 25.0}}) == pytest.approx(0.32)
    assert clip_seconds({"encoder": "x"}) is None
    assert clip_seconds(None) is None
    assert mmss(72.34) == "1:12.3" and mmss(5.0) == "0:05.0" and mmss(None) == "—"


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
    assert by_id["v_big"].units == (SCALE, OFFSET)
    assert config["fit"]["head"] == "weight-score"


def test_bad_predictions_file_names_the_problem(tmp_path):
    (tmp_path / "predictions.csv").write_text("id,truth\nv1,3\n")
    with pytest.raises(ValueError, match="missing columns"):
        write_report(tmp_path)
    result = CliRunner().invoke(report_cli, [str(tmp_path / "nowhere")])
    assert result.exit_code != 0


def test_videos_found_by_id_are_embedded(tmp_path):
    from aqa_pipeline.demo import render_procedural_videos

    run = tmp_path / "run"
    _fabricate_run(run)
    render_procedural_videos(tmp_path / "videos", count=1)
    (tmp_path / "videos" / "clip00.avi").rename(tmp_path / "videos" / "v_small.avi")
    write_report(run, tmp_path / "out", videos_dir=tmp_path / "videos")
    page = (tmp_path / "out" / "videos" / "v_small.html").read_text()
    assert 'src="../../videos/v_small.avi"' in page
    assert "<video" not in (tmp_path / "out" / "videos" / "v_big.html").read_text()  # no file for that id
