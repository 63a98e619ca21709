"""aqa-score: heads trained on I3D features of procedural videos score new ones from their files, with a model
card, a page per video (checked in a real headless Chromium) and refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr

from aqa_pipeline.cli.score import main as score_cli
from aqa_pipeline.demo import demo_preset, render_procedural_videos
from aqa_pipeline.encoders.i3d import I3DEncoder
from aqa_pipeline.extract import extract_features, jobs_from_manifest
from aqa_pipeline.manifests import load_manifest
from aqa_pipeline.train.model_card import ModelCard
from aqa_pipeline.train.run import FitConfig, run

torch.set_num_threads(2)


# small enough for 2 CPU cores in seconds; the procedural videos are a few clips long
WEIGHT_SCORE = {"epochs": 20, "d_model": 64, "q_number": 8, "window": 8, "batch_size": 8}


@pytest.fixture(scope="module")
def trained(weights_dir, tmp_path_factory):
    """Ridge and weight-score on real-I3D features of 40 procedural videos whose true score is the square's
    speed (``run`` and ``ws-run``)."""
    tmp = tmp_path_factory.mktemp("score")
    manifest = load_manifest(render_procedural_videos(tmp / "videos"))
    encoder = I3DEncoder.load(weights_dir / "i3d_rgb_kinetics400.pt")
    jobs = jobs_from_manifest(manifest, tmp / "videos")
    extract_features(jobs, tmp / "f.h5", encoder=encoder, preset=demo_preset(), dataset="procedural",
                     workers=0, batch_size=8, progress=False)  # fmt: skip
    run(tmp / "f.h5", FitConfig(head="ridge", progress=False), tmp / "run")
    run(
        tmp / "f.h5",
        FitConfig(head="weight-score", head_options=WEIGHT_SCORE, progress=False),
        tmp / "ws-run",
    )
    return tmp


def test_new_procedural_videos_are_scored_in_rank_order(trained, tmp_path, monkeypatch, weights_dir):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    manifest = load_manifest(render_procedural_videos(tmp_path / "new", count=12, seed=5))
    paths = [str(tmp_path / "new" / f"{row.video}.avi") for row in manifest.rows]
    truth = {row.id: row.score for row in manifest.rows}
    from aqa_pipeline import score

    scores = score(paths, trained / "run", tmp_path / "out", progress=False)
    assert [s.id for s in scores] == [row.id for row in manifest.rows] and not any(s.error for s in scores)
    rho = spearmanr([truth[s.id] for s in scores], [s.score for s in scores]).statistic
    assert rho >= 0.9, rho
    assert (tmp_path / "out" / "scores.csv").read_text().count("\n") == 13

    # the command line: a rerun extracts nothing again, one JSON object per video, a broken file is reported
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    args = [
        *paths[:2],
        str(tmp_path / "broken.avi"),
        "--model",
        str(trained / "run"),
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(score_cli, [*args, "--json"])
    assert result.exit_code == 1
    objects = [json.loads(chunk) for chunk in result.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert [o["id"] for o in objects] == [
        paths[0].split("/")[-1][:-4],
        paths[1].split("/")[-1][:-4],
        "broken",
    ]
    assert objects[2]["score"] is None and objects[2]["error"]
    assert np.isclose(objects[0]["score"], scores[0].score)


def test_a_run_on_imported_features_without_an_extractor_is_refused(trained, tmp_path):
    card = json.loads((trained / "run" / "model.json").read_text())
    card["feature_recipe"]["i3d"]["encoder"] = "video-swin-b (someone's release)"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.json").write_text(json.dumps(card))
    result = CliRunner().invoke(
        score_cli, [str(trained / "videos" / "clip00.avi"), "--model", str(tmp_path / "run")]
    )
    assert result.exit_code == 1 and "has no extractor here" in result.output


def test_the_model_card_says_what_the_run_is(trained):
    card = ModelCard.read(trained / "ws-run")
    assert (card.head, card.target, card.dataset, card.primary_feature) == (
        "weight-score",
        "score",
        "procedural",
        "i3d",
    )
    assert card.options["d_model"] == 64 and card.options["n_head"] == 4  # every option, resolved
    assert (
        card.feature_recipe["i3d"]["encoder"] == "i3d"
        and len(card.feature_recipe["i3d"]["weights_sha256"]) == 64
    )
    assert (
        card.metrics["spearman"]
        == json.loads((trained / "ws-run" / "metrics.json").read_text())["test"]["spearman"]
    )
    assert card.seeds == [0] and card.folds is None and card.protocol == "honest"
    readme = (trained / "ws-run" / "README.md").read_text()
    assert (
        "weight-score" in readme
        and "| spearman |" in readme
        and card.feature_recipe["i3d"]["weights_sha256"] in readme
    )


def test_a_real_clip_gets_a_page_with_a_timeline_in_points_and_keyframes(
    trained, tmp_path, data_dir, monkeypatch, weights_dir
):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    from aqa_pipeline import score

    clip = data_dir / "videos" / "weightlifting_clean_and_jerk.mp4"
    (scored,) = score([clip], trained / "ws-run", tmp_path / "out", progress=False)
    view = scored.explanation
    assert scored.error is None and view.exact
    assert view.baseline + sum(m.points for m in view.moments) == pytest.approx(scored.score, abs=1e-3)
    # clip starts from the stored frame indices at the file's 19.62 fps: the clips span the 18 s video
    assert view.moments[0].start_s == pytest.approx(0.0, abs=0.1) and 15.0 < view.moments[-1].start_s < 18.1
    page = Path(scored.page).read_text()
    assert page.count('class="bar ') == len(view.moments) and f"{scored.score:.2f}" in page
    frames = re.findall(r'<img src="(frames/[^"]+\.jpg)"', page)
    assert len(frames) == 3 and all((Path(scored.page).parent / f).stat().st_size > 2000 for f in frames)
    source = re.search(r'<video id="player"[^>]* src="([^"]+)"', page).group(1)
    assert (Path(scored.page).parent / source).resolve() == clip.resolve()
    index = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "weightlifting_clean_and_jerk" in index and "not of these videos" in index


def test_the_page_works_in_a_headless_browser(
    trained, tmp_path, data_dir, monkeypatch, weights_dir, chromium
):
    """Chromium loads the page without console errors, shows the score and the timeline, and a click on a
    keyframe seeks the video there; the index sorts by |error|. A screenshot is kept in the report folder."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(weights_dir))
    from aqa_pipeline import score

    clip = data_dir / "videos" / "weightlifting_clean_and_jerk.mp4"
    (scored,) = score([clip], trained / "ws-run", tmp_path / "out", progress=False)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(Path(scored.page).resolve().as_uri())
        assert page.locator("#predicted").inner_text() == f"{scored.score:.2f}"
        assert page.locator("#timeline").is_visible() and page.locator("rect.bar").count() == len(
            scored.explanation.moments
        )
        keyframe = page.locator("figure.keyframe").nth(1)
        target = float(keyframe.get_attribute("data-t"))
        keyframe.click()
        assert page.evaluate("document.getElementById('player').currentTime") == pytest.approx(
            target, abs=0.1
        )
        page.screenshot(path=str(tmp_path / "out" / "report" / "screenshot.png"), full_page=True)

        index = browser.new_page()
        index.on("pageerror", lambda error: errors.append(str(error)))
        index.goto((tmp_path / "out" / "report" / "index.html").resolve().as_uri())
        index.locator("#filter").fill("nothing-matches")
        assert index.locator("#videos tbody tr:visible").count() == 0
        browser.close()
    assert errors == []
    assert (tmp_path / "out" / "report" / "screenshot.png").stat().st_size > 10_000


def test_a_missing_encoder_checkpoint_is_named_before_any_work(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("AQA_WEIGHTS_DIR", str(tmp_path / "no-weights-here"))
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    clip = str(trained / "videos" / "clip00.avi")
    result = CliRunner().invoke(
        score_cli, [clip, "--model", str(trained / "run"), "--out", str(tmp_path / "o")]
    )
    assert (
        result.exit_code == 1
        and "i3d_rgb_kinetics400.pt" in result.output
        and "AQA_WEIGHTS_DIR" in result.output
    )
    assert result.output.startswith("Error: weights 'i3d_kinetics400'")  # one line (and the --debug hint)
    assert not (tmp_path / "o" / "features.h5").exists()


def _offline(*args, **kwargs):
    raise OSError("no network in tests")


def test_judge_scores_become_columns_of_scores_csv(tmp_path):
    """MUSDL explains a score by its judges: scores.csv gets judge1..judgeJ beside the total."""
    from aqa_pipeline.report.points import score_view
    from aqa_pipeline.scoring import VideoScore, _sub_scores, _write_scores

    view = score_view("musdl", {"judge_scores": np.array([7.5, 8.0, 8.5])}, 72.0)
    judged = VideoScore("dive", "dive.mp4", 72.0, explanation=view, sub_scores=_sub_scores(view))
    _write_scores(tmp_path / "scores.csv", [judged, VideoScore("bad", "bad.mp4", None, "cannot decode")])
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0] == "video,path,score,judge1,judge2,judge3,error"
    assert lines[1] == "dive,dive.mp4,72.0,7.5,8.0,8.5," and lines[2] == "bad,bad.mp4,,,,,cannot decode"


def test_a_given_encoder_of_another_kind_is_refused(trained, tmp_path):
    from types import SimpleNamespace

    from aqa_pipeline.scoring import RecipeError, score

    with pytest.raises(RecipeError, match="needs 'i3d' features; the encoder given is 'swin3d-b'"):
        score(
            [trained / "videos" / "clip00.avi"],
            trained / "run",
            tmp_path,
            encoder=SimpleNamespace(name="swin3d-b"),
        )
