"""aqa-reproduce and the reproduce-* Make targets on a miniature copy of every dataset: a few procedural videos per
split, named as the manifest expects and carrying the manifest's labels (frame ranges moved onto the short
videos), checked for the table's rows and columns, the resume, and the refusal of an incomplete folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.manifests import Manifest, load_manifest, write_manifest
from aqa_pipeline.reproduce.papers import load_paper_numbers, numbers_for
from aqa_pipeline.reproduce.plan import PLANS, get_plan, restrict, with_features
from aqa_pipeline.reproduce.sharing import SELECTION, honest_from_paper, last_epoch_spearman
from aqa_pipeline.reproduce.stages import check_sets, options_for, outdated_options
from aqa_pipeline.reproduce.table import COLUMNS

REPO = Path(__file__).resolve().parents[1]
SAMPLES = {"train": 4, "test": 2}
FRAMES = 50  # 2 s at 25 fps: two frames at the 'frames' preset's 1 fps, every I3D preset padded
SQUARE_AT_START = "0,20,24,44"  # the square _render draws on frame 0: the athlete's first-frame box
CELL = re.compile(r"^-?\d+\.\d{3} \(1 seed\)$")


# -- the data and the plan, without running anything -------------------------------------------------------------
def test_every_paper_number_has_a_citation_and_flags_unverified_ones():
    numbers = load_paper_numbers()
    assert {n.dataset for n in numbers} >= {"mtl-aqa", "aqa-7", "rhythmic-gymnastics", "fis-v"}
    for number in numbers:
        assert number.dataset in PLANS and number.head in {run.head for run in PLANS[number.dataset].heads}
        assert number.table and number.row and number.citation
        assert ("[recalled: unverified]" in number.source()) == (number.evidence == "recalled")
    fisv = {(n.head, n.target): n.value for n in numbers_for("fis-v")}
    assert fisv[("gdlt", "tes")] == pytest.approx(0.685) and fisv[("gdlt", "pcs")] == pytest.approx(0.820)


def test_a_paper_number_of_unknown_evidence_is_refused():
    text = "papers: {core: {citation: C}}\nnumbers:\n  - {dataset: mtl-aqa, head: core, target: score,"
    text += " metric: spearman, value: 0.9, evidence: guessed, table: T, row: R}\n"
    with pytest.raises(ValueError, match=r"entry 1 \(mtl-aqa/core\): evidence 'guessed'"):
        load_paper_numbers(text)


def test_the_cli_offers_exactly_the_planned_datasets():
    from aqa_pipeline.cli.reproduce import REPRODUCIBLE

    assert set(REPRODUCIBLE) == set(PLANS)
    with pytest.raises(ValueError, match="mit-skating.*no seed-paper table"):
        get_plan("mit-skating")


def test_head_options_go_only_to_heads_that_have_them_and_typos_are_refused():
    plan = restrict(get_plan("fis-v"), ("gdlt", "ridge"))
    assert [run.head for run in plan.heads] == ["gdlt", "ridge"]
    assert plan.heads[1].features == plan.heads[0].features and plan.heads[1].targets == ("tes", "pcs")
    assert (
        options_for("gdlt", ("epochs=2",)) == ["--set", "epochs=2"]
        and options_for("ridge", ("epochs=2",)) == []
    )
    check_sets(plan, ("epochs=2",))
    with pytest.raises(ValueError, match="none of the heads .* has option 'epoch'"):
        check_sets(plan, ("epoch=2",))


def test_an_honest_run_is_read_from_the_paper_run_only_where_it_would_train_the_same_fits():
    fis_v, rg = get_plan("fis-v"), get_plan("rhythmic-gymnastics")
    action_net, gdlt, weight_score = fis_v.heads
    fis_v_numbers, rg_numbers = numbers_for("fis-v"), numbers_for("rhythmic-gymnastics")
    assert honest_from_paper(gdlt, "tes", fis_v_numbers, ["--set", "epochs=2"])
    assert honest_from_paper(weight_score, "pcs", fis_v_numbers, [])
    assert honest_from_paper(action_net, "tes", fis_v_numbers, [])
    tpt = dataclasses.replace(gdlt, head="tpt")
    assert not honest_from_paper(tpt, "tes", fis_v_numbers, [])  # it carves a validation split
    per_apparatus = rg.heads[1]  # its ρ per apparatus is not in the history
    assert not honest_from_paper(per_apparatus, "score", rg_numbers, [])
    assert not honest_from_paper(gdlt, "tes", fis_v_numbers, ["--use-dd"])
    assert not honest_from_paper(gdlt, "tes", fis_v_numbers, ["--set", "patience=3"])  # stops early
    assert not honest_from_paper(gdlt, "tes", fis_v_numbers, ["--set", "selection=last"])  # no curve at all


def test_the_paper_runs_last_epoch_is_the_honest_run_of_a_head_that_carves_nothing(tmp_path):
    """The premise of reading it there: same videos, seed and schedule, and scoring every epoch changes nothing."""
    from aqa_pipeline.synth import write_synthetic_store
    from aqa_pipeline.train.run import FitConfig, run

    store = write_synthetic_store(
        tmp_path / "s.h5", kind="sparse", n_train=30, n_test=0, dim=8, length=(8, 12)
    )
    options = {"hidden": 16, "d_model": 16, "ffn": 32, "window": 6, "epochs": 5, "batch_size": 8}

    def fitted(protocol: str):
        config = FitConfig(
            head="gdlt",
            head_options=options,
            cv=3,
            seeds=[0, 1],
            protocol=protocol,
            final_model=False,
            progress=False,
        )
        return run(store, config, out_dir=tmp_path / protocol)

    honest, paper = fitted("honest"), fitted("paper")
    expected = [seed["spearman"] for seed in honest.metrics["cv"]["per_seed"]]
    assert last_epoch_spearman(tmp_path / "paper") == pytest.approx(expected, abs=1e-12)
    kept = [curves.history.best_epoch for curves in paper.histories]
    assert any(epoch != options["epochs"] for epoch in kept), (
        "every fit kept its last epoch: nothing is tested"
    )


# -- the Make targets on miniature datasets ----------------------------------------------------------------------
def _render(path: Path, seed: int) -> None:
    """A bright square crossing a noisy frame at a speed of its own."""
    import cv2

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    speed = rng.uniform(0.2, 1.0)
    for t in range(FRAMES):
        frame = rng.integers(0, 40, (64, 96, 3), dtype=np.uint8)
        x = int(speed * t) % 72
        frame[20:44, x : x + 24] = (230, 200, 40)
        writer.write(frame)
    writer.release()


def _miniature(name: str) -> Manifest:
    """A few samples per split, spread over the manifest (so over its classes), frame ranges on the short videos."""
    full = load_manifest(name)
    rows = []
    for split, count in SAMPLES.items():
        pool = full.split(split)
        for row in pool[:: len(pool) // count][:count]:
            ranged = row.start_frame is not None
            rows.append(
                dataclasses.replace(
                    row, start_frame=0 if ranged else None, end_frame=FRAMES - 1 if ranged else None
                )
            )
    return Manifest(name, rows, full.subscore_names)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, weights_dir) -> tuple[Path, dict[str, str]]:
    """DATA root with one miniature video folder per dataset, and the environment the targets run in."""
    root = tmp_path_factory.mktemp("datasets")
    manifests = root / "manifests"
    for name in PLANS:
        manifest = _miniature(name)
        write_manifest(manifest, manifests / f"{name}.csv")
        for seed, video in enumerate(dict.fromkeys(row.video for row in manifest.rows)):
            _render(root / name / f"{video}.avi", seed)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AQA_MANIFEST_DIR": str(manifests)}
    env["AQA_WEIGHTS_DIR"] = str(weights_dir)
    return root, env


def _make(target: str, env: dict[str, str], **variables: object) -> subprocess.CompletedProcess:
    """The target as a user runs it, with this interpreter's environment ('-o setup': no venv is built)."""
    args = ["make", "--no-print-directory", "-o", "setup", target, f"VENV={sys.prefix}"]
    args += [f"{key}={value}" for key, value in variables.items()]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _table(folder: Path) -> list[dict[str, str]]:
    with open(folder / "table.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _expected_rows(dataset: str) -> set[tuple[str, str, str]]:
    numbers = numbers_for(dataset)
    expected = set()
    for run in PLANS[dataset].heads:
        for target in run.targets:
            metrics = [n.metric for n in numbers if n.head == run.head and n.target == target]
            expected |= {(run.head, target, metric) for metric in ["spearman", *metrics]}
    return expected


@pytest.mark.slow
@pytest.mark.realdata  # the real I3D and MobileNetV2 checkpoints
def test_every_target_writes_the_papers_table_beside_ours(datasets, tmp_path):
    root, env = datasets
    done = _make("reproduce-all", env, DATA=root, REPRODUCE_OUT=tmp_path, SEEDS=1, SET="epochs=1",
                 ENCODER="mobilenet-v2", PRESET="frames", THREADS=1)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for dataset in PLANS:
        folder = tmp_path / dataset
        markdown = (folder / "TABLE.md").read_text()
        assert "| " + " | ".join(COLUMNS) + " |" in markdown
        rows = _table(folder)
        assert list(rows[0]) == list(COLUMNS)
        assert {(r["head"], r["target"], r["metric"]) for r in rows} == _expected_rows(dataset)
        theirs = {(n.head, n.target, n.metric): n for n in numbers_for(dataset)}
        for row in rows:
            number = theirs.get((row["head"], row["target"], row["metric"]))
            assert row["paper's number"] == (f"{number.value:g}" if number else "—"), row
            if number:
                assert row["source"] == number.source()
            if row["head"] == "tsa":  # its maps and tubes are cut with the paper's I3D, not mobilenet-v2
                assert row["ours honest"] == "not run" and "needs maps+boxes" in row["note"]
                continue
            if row["head"] == "fspn":
                assert "without the actor stream" in row["note"], row
            if row["head"] == "action-net":
                assert "dynamic stream only" in row["note"], row
            assert row["features"] == "mobilenet-v2-frames" and row["evaluation"] == "test"
            carve = get_head(row["head"]).default_val_fraction  # gdlt and weight-score keep their last epoch
            assert row["honest selection"].startswith("validation split" if carve else "last epoch"), row
            for cell in (row["ours honest"], row["ours paper-protocol"]):
                assert CELL.match(cell) or cell == "n/a", row
        assert any(CELL.match(r["ours honest"]) for r in rows), f"{dataset}: no number at all"


def test_a_run_kept_with_other_head_options_is_redone(tmp_path):
    """A table resumed after an upgrade changed a default (GDLT's lr) must not keep the old run as if current."""
    kept = json.loads(json.dumps(dataclasses.asdict(get_head("gdlt").parse_options({"epochs": 2}))))
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "settings.json").write_text(
        json.dumps({"fit": {"head_options": {**kept, "lr": 1e-3}}})
    )
    assert outdated_options(tmp_path, "gdlt", ["--set", "epochs=2"]) == ["lr: 0.001 → 0.0003"]
    assert outdated_options(tmp_path, "gdlt", ["--use-dd", "--set", "epochs=2", "--set", "lr=1e-3"]) == []
    assert outdated_options(tmp_path / "never-run", "gdlt", []) == []


def test_a_run_kept_before_an_option_existed_is_kept_at_its_default(tmp_path):
    """An upgrade that only adds an option (``precision``) redoes nothing; asking for another value of it does."""
    kept = json.loads(json.dumps(dataclasses.asdict(get_head("gdlt").parse_options({}))))
    del kept["precision"]
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "settings.json").write_text(json.dumps({"fit": {"head_options": kept}}))
    assert outdated_options(tmp_path, "gdlt", []) == []
    assert outdated_options(tmp_path, "gdlt", ["--set", "precision=bf16"]) == ["precision: fp32 → bf16"]


@pytest.mark.slow
@pytest.mark.realdata  # the real I3D and MobileNetV2 checkpoints
def test_the_paper_features_resume_without_redoing_finished_stages(datasets, tmp_path):
    root, env = datasets
    run = dict(DATA=root / "finediving", REPRODUCE_OUT=tmp_path, SEEDS=1, SET="epochs=1", HEADS="core",
               INIT_BOX=SQUARE_AT_START)  # fmt: skip
    first = _make("reproduce-finediving", env, THREADS=1, **run)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "features: 1 built, 0 already done; runs: 2 trained, 0 already done" in first.stdout
    # the paper's recipe, logged as a command, with FSPN's actor clips in the same pass
    assert "--encoder i3d --preset finediving --device cpu --actor --init-box 0,20,24,44" in first.stderr
    assert {r["features"] for r in _table(tmp_path / "finediving")} == {"i3d-finediving+actor"}
    metrics = tmp_path / "finediving" / "runs" / "core-score-honest" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = _make("reproduce-finediving", env, **run)
    assert "features: 0 built, 1 already done; runs: 0 trained, 2 already done" in again.stdout, again.stderr
    assert metrics.stat().st_mtime_ns == stamp
    metrics.unlink()  # an interrupted run: its directory exists, its metrics do not
    resumed = _make("reproduce-finediving", env, **run)
    assert "runs: 1 trained, 1 already done" in resumed.stdout, resumed.stderr[-3000:]
    assert json.loads(metrics.read_text())["fits_reused"] == 1  # its finished fit was not refitted
    more = _make("reproduce-finediving", env, **{**run, "SEEDS": 2})  # more seeds: only the new one is fitted
    assert "runs: 2 trained, 0 already done" in more.stdout, more.stderr[-3000:]
    assert json.loads(metrics.read_text())["fits_reused"] == 1
    assert "(2 seeds)" in (tmp_path / "finediving" / "TABLE.md").read_text()


@pytest.mark.slow
@pytest.mark.realdata  # the real I3D and MobileNetV2 checkpoints
def test_a_folder_with_missing_videos_is_refused_before_any_work(datasets, tmp_path):
    root, env = datasets
    manifest = load_manifest(Path(env["AQA_MANIFEST_DIR"]) / "aqa-7.csv")
    videos = tmp_path / "aqa-7"
    for seed, row in enumerate(manifest.rows[1:]):  # the first sample's video is missing
        _render(videos / f"{row.video}.avi", seed)
    refused = _make("reproduce-aqa-7", env, DATA=videos, REPRODUCE_OUT=tmp_path / "out")
    assert refused.returncode != 0
    assert "test 2/2, train 3/4; 1 videos are missing (nothing was run)" in refused.stderr
    missing = [line for line in refused.stderr.splitlines() if line.strip().startswith("missing ")]
    assert missing == [f"  missing {videos / manifest.rows[0].video}.* (video {manifest.rows[0].video!r})"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.realdata  # the real I3D and MobileNetV2 checkpoints
def test_published_features_replace_the_videos(datasets, tmp_path):
    root, env = datasets
    manifest = load_manifest(Path(env["AQA_MANIFEST_DIR"]) / "fis-v.csv")
    rng = np.random.default_rng(0)
    for row in manifest.rows:
        np.save(tmp_path / f"{row.id}.npy", rng.standard_normal((8, 1024)).astype(np.float32))
    out = tmp_path / "out"
    done = _make(
        "reproduce-fis-v", env, FEATURES=tmp_path, REPRODUCE_OUT=out, SEEDS=1, SET="epochs=1", HEADS="gdlt"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "samples with published features: test 2/2, train 4/4" in done.stdout
    assert "runs: 2 trained, 0 already done" in done.stdout  # the honest cells are the paper runs' last epoch
    rows = _table(out / "fis-v")
    assert [(r["head"], r["target"]) for r in rows] == [("gdlt", "tes"), ("gdlt", "pcs")]
    assert {r["honest selection"] for r in rows} == {SELECTION}
    assert {r["features"] for r in rows} == {"gdlt-vst-published"}
    assert [r["paper's number"] for r in rows] == ["0.685", "0.82"]


def test_athlete_kinds_need_the_papers_encoder_and_are_shared_by_the_heads_of_a_store():
    plan = get_plan("mtl-aqa")
    by_head = {run.head: run for run in plan.heads}
    assert by_head["core"].features == by_head["tsa"].features == by_head["fspn"].features  # decoded once
    assert by_head["core"].features.name == "i3d-mtl-aqa+maps+boxes+actor"
    assert by_head["tsa"].input_kind() == "i3d_maps" and by_head["core"].input_kind() == "i3d"
    assert "use_actor=false" not in " ".join(by_head["fspn"].fit_args)
    assert restrict(plan, ("ridge",)).heads[0].features == by_head["core"].features  # no second I3D pass
    preset_only = {run.head: run for run in with_features(plan, preset="finediving").heads}
    assert preset_only["tsa"].features.athlete == ("maps", "boxes", "actor")
    assert not preset_only["tsa"].not_run
    for moved in (with_features(plan, encoder="mobilenet-v2"), with_features(plan, "gdlt-vst", "published")):
        runs = {run.head: run for run in moved.heads}
        assert not any(run.features.athlete for run in moved.heads)
        assert runs["tsa"].not_run.startswith("needs maps+boxes")
        assert runs["fspn"].fit_args[-2:] == ("--set", "use_actor=false") and not runs["fspn"].not_run
        assert "without the actor stream" in runs["fspn"].variant
    fisv = {run.head: run for run in get_plan("fis-v").heads}
    assert fisv["action-net"].features.name == "i3d-action-net+crops" and not fisv["action-net"].variant
    assert fisv["action-net"].features.extract_flags() == ["--crops", "resnet50"]  # ACTION-NET's ResNet-50
    published = {run.head: run for run in with_features(get_plan("fis-v"), "gdlt-vst", "published").heads}
    assert published["action-net"].variant.startswith("dynamic stream only")


def test_a_first_frame_box_is_refused_where_nothing_is_tracked(tmp_path):
    from aqa_pipeline.reproduce.run import Request, check_tracking, plan_for

    published = Request("fis-v", tmp_path, published=True, out=tmp_path, init_box=SQUARE_AT_START)
    with pytest.raises(ValueError, match="no feature stage of fis-v tracks or detects the athlete"):
        check_tracking(plan_for(published), published)
    videos = dataclasses.replace(published, published=False)
    check_tracking(plan_for(videos), videos)  # ACTION-NET's crops: the detector matters


@pytest.mark.slow
@pytest.mark.realdata  # the real I3D and NanoTrack V2 checkpoints
def test_tsa_and_fspn_train_on_the_tracked_athlete(datasets, tmp_path):
    """TSA on I3D maps with tube masks from the tracked boxes, FSPN with its actor clips: one store for both."""
    root, env = datasets
    done = _make("reproduce-mtl-aqa", env, DATA=root / "mtl-aqa", REPRODUCE_OUT=tmp_path, SEEDS=1,
                 SET="epochs=1", HEADS="tsa,fspn", PRESET="finediving", INIT_BOX=SQUARE_AT_START, THREADS=1)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "features: 1 built" in done.stdout
    assert "--maps --maps-endpoint MaxPool3d_4a_3x3 --boxes --actor --init-box 0,20,24,44" in done.stderr
    assert "--feature i3d_maps" in done.stderr and "--feature i3d " in done.stderr
    rows = _table(tmp_path / "mtl-aqa")
    assert {row["head"] for row in rows} == {"tsa", "fspn"}
    for row in rows:
        assert row["features"] == "i3d-finediving+maps+boxes+actor" and row["note"] == "", row
        assert CELL.match(row["ours honest"]) and CELL.match(row["ours paper-protocol"]), row
    from aqa_pipeline.store import FeatureStore

    store = FeatureStore(tmp_path / "mtl-aqa" / "features" / "i3d-finediving+maps+boxes+actor.h5")
    assert {"i3d", "i3d_maps", "boxes", "i3d_actor"} <= set(store.kinds)
