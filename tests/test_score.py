"""aqa-score: a head trained on I3D features of procedural videos scores new ones from their files; refusals."""

from __future__ import annotations

import json

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
from aqa_pipeline.train.run import FitConfig, run

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained(weights_dir, tmp_path_factory):
    """Ridge on real-I3D features of 40 procedural videos whose true score is the square's speed."""
    tmp = tmp_path_factory.mktemp("score")
    manifest = load_manifest(render_procedural_videos(tmp / "videos"))
    encoder = I3DEncoder.load(weights_dir / "i3d_rgb_kinetics400.pt")
    jobs = jobs_from_manifest(manifest, tmp / "videos")
    extract_features(jobs, tmp / "f.h5", encoder=encoder, preset=demo_preset(), dataset="procedural",
                     workers=0, batch_size=8, progress=False)  # fmt: skip
    run(tmp / "f.h5", FitConfig(head="ridge", progress=False), tmp / "run")
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
    run_json = json.loads((trained / "run" / "run.json").read_text())
    run_json["provenance"]["i3d"]["encoder"] = "video-swin-b (someone's release)"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps(run_json))
    result = CliRunner().invoke(
        score_cli, [str(trained / "videos" / "clip00.avi"), "--model", str(tmp_path / "run")]
    )
    assert result.exit_code == 1 and "has no extractor here" in result.output
