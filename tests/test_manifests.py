"""Dataset manifests: the checked-in CSVs, the loader's validation, and rebuilding them from the real files."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aqa_pipeline.cli.manifest import main as manifest_cli
from aqa_pipeline.manifests import (
    DATASETS,
    LEADING_COLUMNS,
    Manifest,
    ManifestError,
    ManifestRow,
    build_aqa_7,
    build_manifest,
    load_manifest,
    write_manifest,
)

# The split sizes the papers publish, written out here rather than read from the module under test.
PUBLISHED_COUNTS = {
    "mtl-aqa": {"train": 1059, "test": 353},
    "aqa-7": {"train": 803, "test": 303},
    "finediving": {"train": 2251, "test": 749},
    "rhythmic-gymnastics": {"train": 800, "test": 200},
    "fis-v": {"train": 400, "test": 100},
    "mit-skating": {"train": 150},  # no official split: everything is train
}
SUBSCORES = {
    "mtl-aqa": tuple(f"judge{i}" for i in range(1, 8)),
    "aqa-7": (),
    "finediving": tuple(f"judge{i}" for i in range(1, 8)),
    "rhythmic-gymnastics": ("difficulty_score", "execution", "penalty"),
    "fis-v": ("tes", "pcs", "deductions"),
    "mit-skating": ("tes", "pcs"),
}
ID_PATTERNS = {
    "mtl-aqa": r"\d{2}_\d{2,3}",
    "aqa-7": r"(diving|gym_vault|ski_big_air|snowboard_big_air|sync_3m|sync_10m)_\d{3}",
    "finediving": r"[^_].*[^_]__\d+",
    "rhythmic-gymnastics": r"(Ball|Clubs|Hoop|Ribbon)_\d{3}",
    "fis-v": r"[1-9]\d*",
    "mit-skating": r"\d+_.+",
}


# ------------------------------------------------------------------------------------ checked-in manifests


@pytest.mark.parametrize("name", DATASETS)
def test_checked_in_manifest_matches_published_split(name):
    manifest = load_manifest(name)
    assert manifest.split_counts() == PUBLISHED_COUNTS[name]
    assert manifest.subscore_names == SUBSCORES[name]
    assert all(re.fullmatch(ID_PATTERNS[name], row.id) for row in manifest.rows)
    assert len({row.id for row in manifest.rows}) == len(manifest)


def test_manifest_contents_spot_checks():
    mtl = load_manifest("mtl-aqa")
    dive = mtl.by_id("01_01")  # (video 1, dive 1) in the official pickle: 407C, DD 3.2, 88.0
    assert (dive.video, dive.start_frame, dive.end_frame) == ("01", 7377, 7462)
    assert (dive.score, dive.difficulty, dive.action_class) == (88.0, 3.2, "407C")
    assert [dive.subscores[f"judge{i}"] for i in range(1, 8)] == [9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5]

    aqa7 = load_manifest("aqa-7")
    assert {row.action_class for row in aqa7.rows} == {
        "diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_3m", "sync_10m"
    }  # fmt: skip
    vault = [row.score for row in aqa7.rows if row.action_class == "gym_vault"]
    assert min(vault) == pytest.approx(12.3) and max(vault) == pytest.approx(16.87)  # judged scale, not x100

    fisv = load_manifest("fis-v").by_id("1")
    assert fisv.score == 57.07 and fisv.subscores == {"tes": 28.71, "pcs": 29.36, "deductions": 1.0}

    finediving = load_manifest("finediving")
    assert {len(row.subscores) for row in finediving.rows} == {3, 5, 7}  # judge panels differ by event

    rg = load_manifest("rhythmic-gymnastics")
    assert {c: sum(r.action_class == c for r in rg.split("test")) for c in ("ball", "clubs", "hoop", "ribbon")} == {
        "ball": 50, "clubs": 50, "hoop": 50, "ribbon": 50
    }  # fmt: skip


def test_labels_are_flat_and_leave_out_missing_values():
    mtl = load_manifest("mtl-aqa")
    labels = mtl.labels(mtl.by_id("01_01"))
    assert labels["score"] == 88.0 and labels["difficulty"] == 3.2 and labels["action_class"] == "407C"
    assert labels["split"] == "test" and labels["judge7"] == 8.5
    fisv = load_manifest("fis-v")
    labels = fisv.labels(fisv.by_id("2"))
    assert labels == {"score": 54.96, "split": "test", "tes": 28.88, "pcs": 27.08, "deductions": 1.0}


def test_by_id_and_split_errors_are_clear():
    manifest = load_manifest("fis-v")
    with pytest.raises(KeyError, match="'9999' is not in manifest 'fis-v'"):
        manifest.by_id("9999")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        manifest.split("val")


# ------------------------------------------------------------------------------------------------ loader


def _write_csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


HEADER = ",".join(LEADING_COLUMNS) + ",tes"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ManifestError, match=r"unknown dataset 'mtl_aqa': known datasets are mtl-aqa, aqa-7"):
        load_manifest("mtl_aqa")


def test_missing_columns_are_named_with_the_file(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", "id,video,split,score", "a,a,train,1")
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    message = str(error.value)
    assert str(path) in message and "start_frame, end_frame, difficulty, action_class" in message


def test_duplicate_ids_are_named(tmp_path):
    path = _write_csv(
        tmp_path / "dup.csv", HEADER, "a,v,,,train,1,,,2", "b,v,,,test,1,,,2", "a,v,,,test,3,,,"
    )
    with pytest.raises(ManifestError, match=r"1 duplicate ids: a$"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("x,v,,,validation,1,,,", r"row 1 \(id 'x'\): split is 'validation'"),
        ("x,v,,,train,high,,,", r"row 1 \(id 'x'\): column 'score' is 'high', expected float"),
        ("x,v,,,train,,,,", r"row 1 \(id 'x'\): score is empty"),
        ("x,v,,,train,nan,,,", r"row 1 \(id 'x'\): score is nan"),
        ("x,v,1.5,,train,1,,,", r"column 'start_frame' is '1.5', expected int"),
        ("x,v,9,3,train,1,,,", r"end_frame 3 is before start_frame 9"),
        ("x,v,,,train,1,,", r"8 cells, expected 9"),
        ("x,v,,,train,1,,,bad", r"column 'tes' is 'bad', expected float"),
    ],
)
def test_bad_rows_are_named(tmp_path, line, expected):
    path = _write_csv(tmp_path / "m.csv", HEADER, line)
    with pytest.raises(ManifestError, match=expected):
        load_manifest(path)


def test_round_trip_keeps_missing_values_missing(tmp_path):
    rows = [
        ManifestRow("a", "va", 3, 40, "train", 71.4, 3.2, "407C", {"judge1": 7.5, "judge2": 8.0}),
        ManifestRow("b", "vb", None, None, "test", 1667.0000000000002 / 100, None, None, {"judge2": 6.5}),
    ]
    path = write_manifest(Manifest("tiny", rows), tmp_path / "tiny.csv")
    assert path.read_text().splitlines() == [
        ",".join(LEADING_COLUMNS) + ",judge1,judge2",
        "a,va,3,40,train,71.4,3.2,407C,7.5,8",
        "b,vb,,,test,16.67,,,,6.5",
    ]
    loaded = load_manifest(path)
    assert loaded.name == "tiny" and loaded.rows == [
        *rows[:1],
        ManifestRow("b", "vb", None, None, "test", 16.67, subscores={"judge2": 6.5}),
    ]
    assert loaded.labels(loaded.rows[1]) == {"score": 16.67, "split": "test", "judge2": 6.5}


def test_manifest_dir_can_be_overridden(tmp_path, monkeypatch):
    write_manifest(
        Manifest("fis-v", [ManifestRow("7", "7", None, None, "train", 50.0)]), tmp_path / "fis-v.csv"
    )
    monkeypatch.setenv("AQA_MANIFEST_DIR", str(tmp_path))
    assert [row.id for row in load_manifest("fis-v").rows] == ["7"]
    with pytest.raises(ManifestError, match="aqa-7.csv does not exist; rebuild it with `aqa-manifest build"):
        load_manifest("aqa-7")


# ------------------------------------------------------------------------------------ builders (synthetic)


def test_builder_refuses_split_sizes_other_than_published(tmp_path):
    header = "Video_Name\tDifficulty_Score    Execution_Score Total_Score\tPenalty\tVideo_length"
    _write_csv(tmp_path / "train.txt", header, "Ball_001\t10.50\t8.30\t18.80\t0.00\t92")
    _write_csv(tmp_path / "test.txt", header, "Ball_022\t9.10\t7.60\t16.70\t0.00\t91")
    with pytest.raises(
        ManifestError, match=r"give split sizes \{'train': 1, 'test': 1\}, but the published split"
    ):
        build_manifest("rhythmic-gymnastics", tmp_path)


def test_builder_names_a_missing_annotation_file(tmp_path):
    with pytest.raises(ManifestError, match=r"fis-v: annotation file .*fs_dataset.csv not found"):
        build_manifest("fis-v", tmp_path)
    with pytest.raises(ManifestError, match="unknown dataset 'logo'"):
        build_manifest("logo", tmp_path)


@pytest.mark.parametrize("stored_scale", [1.0, 100.0])
def test_aqa7_scores_come_out_on_the_judged_scale(tmp_path, stored_scale):
    from scipy.io import savemat

    train = np.array([[1, 5, 84.15], [2, 3, 16.87], [5, 1, 46.2]]) * [1, 1, stored_scale]
    test = np.array([[6, 2, 99.36]]) * [1, 1, stored_scale]
    savemat(tmp_path / "consolidated_train_list.mat", {"consolidated_train_list": train})
    savemat(tmp_path / "consolidated_test_list.mat", {"consolidated_test_list": test})
    manifest = build_aqa_7(tmp_path)
    assert [(r.id, r.video, r.split) for r in manifest.rows] == [
        ("diving_005", "diving/005", "train"),
        ("gym_vault_003", "gym_vault/003", "train"),
        ("sync_3m_001", "sync_diving_3m/001", "train"),
        ("sync_10m_002", "sync_diving_10m/002", "test"),
    ]
    assert [r.score for r in manifest.rows] == pytest.approx([84.15, 16.87, 46.2, 99.36])


def test_aqa7_rejects_scores_outside_the_published_ranges(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "consolidated_train_list.mat", {"consolidated_train_list": np.array([[2, 1, 30.0]])})
    savemat(tmp_path / "consolidated_test_list.mat", {"consolidated_test_list": np.array([[2, 2, 15.0]])})
    with pytest.raises(ManifestError, match="outside the published per-class ranges"):
        build_aqa_7(tmp_path)


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_help_and_show():
    runner = CliRunner()
    result = runner.invoke(manifest_cli, ["--help"])
    assert result.exit_code == 0 and "aqa-manifest build --dataset" in result.output
    result = runner.invoke(manifest_cli, ["show", "rhythmic-gymnastics"])
    assert result.exit_code == 0, result.output
    assert "train    800" in result.output and "ball 250, clubs 250, hoop 250, ribbon 250" in result.output
    result = runner.invoke(manifest_cli, ["show", "nope"])
    assert result.exit_code != 0 and "known datasets are" in result.output


# ---------------------------------------------------------------------------------------- real annotations


@pytest.mark.realdata
@pytest.mark.parametrize("name", DATASETS)
def test_rebuilding_from_official_files_reproduces_the_checked_in_manifest(data_dir, tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Fis-V total warning has its own test below
        manifest = build_manifest(name, data_dir / "annotations" / name)
    rebuilt = write_manifest(manifest, tmp_path / f"{name}.csv")
    checked_in = Path(load_manifest(name).source)
    assert rebuilt.read_text(encoding="utf-8") == checked_in.read_text(encoding="utf-8"), (
        f"{checked_in} is stale: rebuild it with `aqa-manifest build --dataset {name} --annotations ...`"
    )


@pytest.mark.realdata
def test_fisv_totals_that_contradict_tes_pcs_deductions_are_reported(data_dir):
    with pytest.warns(UserWarning) as caught:
        build_manifest("fis-v", data_dir / "annotations")
    message = str(caught[0].message)
    assert "videos 19, 69, 90, 254, 257, 258, 300, 320, 423, 445, 452, 458, 472, 498;" in message


@pytest.mark.realdata
def test_fisv_train_ids_match_the_published_feature_files(data_dir):
    feature_ids = {path.stem for path in (data_dir / "fisv" / "swintx_avg_fps25_clip32").glob("*.npy")}
    manifest = load_manifest("fis-v")
    assert feature_ids == {row.id for row in manifest.split("train")}
    published_labels = {}
    for line in (data_dir / "fisv" / "train.txt").read_text().split("\n"):
        if line.strip():
            sample_id, tes, pcs, deductions = line.split()
            published_labels[sample_id] = {
                "tes": float(tes),
                "pcs": float(pcs),
                "deductions": float(deductions),
            }
    assert published_labels == {row.id: row.subscores for row in manifest.split("train")}
