"""Dataset manifests: one checked-in CSV per dataset listing every sample, its split and its labels.

A manifest is the single place later stages read labels from, so it is validated strictly on load and is
rebuilt from the official upstream annotation files (never edited by hand):

    manifest = load_manifest("mtl-aqa")                      # manifests/mtl-aqa.csv
    manifest = build_manifest("fis-v", "$AQA_DATA_DIR/annotations/fis-v")
    write_manifest(manifest, "manifests/fis-v.csv")

CSV format: the leading columns ``id,video,start_frame,end_frame,split,score,difficulty,action_class`` are
followed by the dataset's sub-score columns (lowercase snake_case, all numeric). An empty cell means the value
is unknown. ``video`` is the source video's name without extension (relative to the dataset's video folder);
``start_frame``/``end_frame`` are the sample's frame range inside it, exactly as the upstream annotation gives
them, where the dataset has one. ``difficulty`` is a multiplicative degree of difficulty (diving only).

Sample ids follow the names the community's frame folders and feature files use, so a feature store built from
published features lines up with the manifest:

- ``mtl-aqa``: ``"{video:02d}_{dive:02d}"`` (``01_27``, ``01_100``), the frame-folder names of the MTL-AQA,
  USDL/MUSDL and CoRe code; ``video`` is the Sr. No. of ``Video_List.xlsx`` (``"01"``).
- ``aqa-7``: ``"{class}_{sample:03d}"`` (``diving_001``, ``sync_3m_042``); ``video`` is the upstream
  ``{folder}/{sample:03d}`` (``sync_diving_3m/042``).
- ``finediving``: ``"{event}__{index}"`` (the upstream key ``(event, index)``; event names contain single
  underscores only); ``video`` is the event's competition video, frames from the coarse annotation.
- ``rhythmic-gymnastics``: the upstream ``Video_Name`` (``Ball_001``), as in GDLT's ``<id>.npy`` features.
- ``fis-v``: the plain video number (``"1"``), as in the published ``<id>.npy`` Video Swin features.
- ``mit-skating``: the upstream sample name (``1_ICE_SKATING_...-cVe-zXZFOww``); ``video`` is that name
  without its ``N_`` prefix (the YouTube source), frames from the annotation.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .paths import manifest_dir
from .safe_pickle import load_annotation_pickle

DATASETS = ("mtl-aqa", "aqa-7", "finediving", "rhythmic-gymnastics", "fis-v", "mit-skating")
SPLITS = ("train", "test")
LEADING_COLUMNS = ("id", "video", "start_frame", "end_frame", "split", "score", "difficulty", "action_class")

# Published split sizes. A builder refuses official files that yield other counts: a silently different split
# makes every number computed on it incomparable with the literature. MIT-Skating has no official split.
EXPECTED_SPLIT_COUNTS: dict[str, dict[str, int]] = {
    "mtl-aqa": {"train": 1059, "test": 353},
    "aqa-7": {"train": 803, "test": 303},
    "finediving": {"train": 2251, "test": 749},
    "rhythmic-gymnastics": {"train": 800, "test": 200},
    "fis-v": {"train": 400, "test": 100},
    "mit-skating": {"train": 150},
}


class ManifestError(ValueError):
    """A manifest or an annotation file is malformed; the message names the file, row and sample."""


@dataclass
class ManifestRow:
    """One sample. Missing optional values are ``None``; missing sub-scores are absent from ``subscores``."""

    id: str
    video: str
    start_frame: int | None
    end_frame: int | None
    split: str
    score: float
    difficulty: float | None = None
    action_class: str | None = None
    subscores: dict[str, float] = field(default_factory=dict)


@dataclass
class Manifest:
    """All samples of one dataset. Construction validates ids, splits and scores, whatever the source."""

    name: str
    rows: list[ManifestRow]
    subscore_names: tuple[str, ...] = ()
    source: str = "<memory>"

    def __post_init__(self) -> None:
        # Column order: as given, else first appearance (a builder passes it so empty columns survive).
        names = self.subscore_names or dict.fromkeys(name for row in self.rows for name in row.subscores)
        self.subscore_names = tuple(names)
        _validate(self)

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def _index(self) -> dict[str, ManifestRow]:
        return {row.id: row for row in self.rows}

    def by_id(self, sample_id: str) -> ManifestRow:
        try:
            return self._index[sample_id]
        except KeyError:
            raise KeyError(f"sample {sample_id!r} is not in manifest {self.name!r} ({self.source})") from None

    def split(self, name: str) -> list[ManifestRow]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return [row for row in self.rows if row.split == name]

    def split_counts(self) -> dict[str, int]:
        return dict(Counter(row.split for row in self.rows))

    def labels(self, row: ManifestRow) -> dict[str, float | str]:
        """The sample's labels as a flat dict (stored as attributes in the feature store). Unknown values are
        left out rather than stored as NaN, so a reader can tell 'missing' from a number."""
        labels: dict[str, float | str] = {"score": row.score, "split": row.split}
        if row.difficulty is not None:
            labels["difficulty"] = row.difficulty
        if row.action_class is not None:
            labels["action_class"] = row.action_class
        labels.update(row.subscores)
        return labels


# ----------------------------------------------------------------------------------------------- validation


def _validate(manifest: Manifest) -> None:
    where = f"manifest {manifest.name!r} ({manifest.source})"
    for name in manifest.subscore_names:
        if name in LEADING_COLUMNS or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ManifestError(
                f"{where}: sub-score column {name!r} must be lowercase snake_case and not reuse "
                f"a leading column name ({', '.join(LEADING_COLUMNS)})"
            )
    for number, row in enumerate(manifest.rows, start=1):
        here = f"{where}, row {number} (id {row.id!r})"
        if not row.id:
            raise ManifestError(f"{here}: empty id")
        if row.split not in SPLITS:
            raise ManifestError(f"{here}: split is {row.split!r}, expected one of {', '.join(SPLITS)}")
        if not math.isfinite(row.score):
            raise ManifestError(f"{here}: score is {row.score}, expected a finite number")
        if row.start_frame is not None and row.end_frame is not None and row.end_frame < row.start_frame:
            raise ManifestError(f"{here}: end_frame {row.end_frame} is before start_frame {row.start_frame}")
        unknown = set(row.subscores) - set(manifest.subscore_names)
        if unknown:
            raise ManifestError(f"{here}: sub-scores {sorted(unknown)} are not manifest columns")
    duplicates = sorted(sample_id for sample_id, n in Counter(r.id for r in manifest.rows).items() if n > 1)
    if duplicates:
        shown = ", ".join(duplicates[:10]) + (" ..." if len(duplicates) > 10 else "")
        raise ManifestError(f"{where}: {len(duplicates)} duplicate ids: {shown}")


# ------------------------------------------------------------------------------------------------ CSV I/O


def manifest_path(name: str) -> Path:
    """Where the checked-in manifest of a known dataset lives (``$AQA_MANIFEST_DIR`` overrides)."""
    if name not in DATASETS:
        raise ManifestError(f"unknown dataset {name!r}: known datasets are {', '.join(DATASETS)}")
    return manifest_dir() / f"{name}.csv"


def load_manifest(name_or_path: str | os.PathLike) -> Manifest:
    """Load a manifest by dataset name (from the manifests folder) or from a CSV path, and validate it."""
    text = os.fspath(name_or_path)
    if text in DATASETS:
        path, name = manifest_path(text), text
    elif text.endswith(".csv") or os.sep in text or Path(text).is_file():
        path = Path(text)
        name = path.stem
    else:
        raise ManifestError(
            f"unknown dataset {text!r}: known datasets are {', '.join(DATASETS)} "
            "(or pass the path of a manifest .csv)"
        )
    if not path.is_file():
        raise ManifestError(
            f"manifest file {path} does not exist"
            + (f"; rebuild it with `aqa-manifest build --dataset {name}`" if name in DATASETS else "")
        )
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"manifest {path} is empty (expected a header row)")
        missing = [column for column in LEADING_COLUMNS if column not in header]
        if missing:
            raise ManifestError(
                f"manifest {path} is missing required columns: {', '.join(missing)} "
                f"(expected leading columns {','.join(LEADING_COLUMNS)})"
            )
        repeated = sorted(column for column, n in Counter(header).items() if n > 1)
        if repeated:
            raise ManifestError(f"manifest {path} repeats columns: {', '.join(repeated)}")
        subscore_names = tuple(column for column in header if column not in LEADING_COLUMNS)
        rows = [
            _parse_row(dict(zip(header, cells, strict=False)), cells, len(header), subscore_names, path, n)
            for n, cells in enumerate(reader, start=1)
            if cells
        ]
    return Manifest(name=name, rows=rows, subscore_names=subscore_names, source=str(path))


def _parse_row(
    record: dict[str, str],
    cells: list[str],
    width: int,
    subscore_names: tuple[str, ...],
    path: Path,
    number: int,
) -> ManifestRow:
    here = f"manifest {path}, row {number} (id {record.get('id', '')!r})"
    if len(cells) != width:
        raise ManifestError(f"{here}: {len(cells)} cells, expected {width} (one per header column)")

    def number_or_none(column: str, kind: type) -> float | int | None:
        cell = record[column].strip()
        if not cell:
            return None
        try:
            return kind(cell)
        except ValueError:
            raise ManifestError(f"{here}: column {column!r} is {cell!r}, expected {kind.__name__}") from None

    score = number_or_none("score", float)
    if score is None:
        raise ManifestError(f"{here}: score is empty")
    subscores = {name: value for name in subscore_names if (value := number_or_none(name, float)) is not None}
    return ManifestRow(
        id=record["id"].strip(),
        video=record["video"].strip(),
        start_frame=number_or_none("start_frame", int),
        end_frame=number_or_none("end_frame", int),
        split=record["split"].strip(),
        score=score,
        difficulty=number_or_none("difficulty", float),
        action_class=record["action_class"].strip() or None,
        subscores=subscores,
    )


def _format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = repr(round(value, 6))  # removes binary noise such as 1667.0000000000002 / 100
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Write a manifest as CSV (atomically: a half-written manifest must never replace a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*LEADING_COLUMNS, *manifest.subscore_names])
        for row in manifest.rows:
            leading = [
                row.id,
                row.video,
                row.start_frame,
                row.end_frame,
                row.split,
                float(row.score),
                row.difficulty,
                row.action_class,
            ]
            writer.writerow(
                [_format_cell(v) for v in leading]
                + [_format_cell(row.subscores.get(name)) for name in manifest.subscore_names]
            )
    partial.replace(path)
    return path


# ---------------------------------------------------------------------------------------------- builders


def _require(annotations_dir: Path, filename: str, dataset: str) -> Path:
    path = annotations_dir / filename
    if not path.is_file():
        raise ManifestError(f"{dataset}: annotation file {path} not found (expected the official {filename})")
    return path


def _load_pickle(path: Path) -> object:
    return load_annotation_pickle(path)


def _judges(scores: Iterable[float]) -> dict[str, float]:
    return {f"judge{i}": float(s) for i, s in enumerate(scores, start=1)}


def _split_of(key: object, train: set, test: set, dataset: str) -> str:
    if key in train and key in test:
        raise ManifestError(f"{dataset}: sample {key!r} is in both the train and the test split")
    if key in train:
        return "train"
    if key in test:
        return "test"
    raise ManifestError(f"{dataset}: sample {key!r} is in neither split file")


def build_mtl_aqa(annotations_dir: Path) -> Manifest:
    """MTL-AQA: ``final_annotations_dict_with_dive_number.pkl`` keyed by (video, dive) + split 0 lists."""
    d = "mtl-aqa"
    annotations = _load_pickle(_require(annotations_dir, "final_annotations_dict_with_dive_number.pkl", d))
    train = set(_load_pickle(_require(annotations_dir, "train_split_0.pkl", d)))
    test = set(_load_pickle(_require(annotations_dir, "test_split_0.pkl", d)))
    rows = [
        ManifestRow(
            id=f"{video:02d}_{dive:02d}",
            video=f"{video:02d}",
            start_frame=int(a["start_frame"]),
            end_frame=int(a["end_frame"]),
            split=_split_of((video, dive), train, test, d),
            score=float(a["final_score"]),
            difficulty=float(a["difficulty"]),
            action_class=str(a["dive_number"]).upper(),
            subscores=_judges(a["judge_scores"]),
        )
        for (video, dive), a in sorted(annotations.items())
    ]
    return Manifest(d, rows, subscore_names=tuple(f"judge{i}" for i in range(1, 8)))


# AQA-7 class index (column 0 of the split lists) → (our class name, upstream folder name). Trampoline (7)
# is not part of split 4. Published per-class score ranges (CoRe/TPT normalise with them) double as a check.
_AQA7_CLASSES = {
    1: ("diving", "diving", (21.6, 102.6)),
    2: ("gym_vault", "gym_vault", (12.3, 16.87)),
    3: ("ski_big_air", "ski_big_air", (8.0, 50.0)),
    4: ("snowboard_big_air", "snowboard_big_air", (8.0, 50.0)),
    5: ("sync_3m", "sync_diving_3m", (46.2, 104.88)),
    6: ("sync_10m", "sync_diving_10m", (49.8, 99.36)),
}


def build_aqa_7(annotations_dir: Path) -> Manifest:
    """AQA-7 split 4: ``consolidated_{train,test}_list.mat``, rows ``[class, sample, score]``.

    Copies of these files in circulation store the score either as judged or multiplied by 100; the scale is
    chosen so that every score falls inside its class's published range, and anything else is an error."""
    from scipy.io import loadmat

    d = "aqa-7"
    entries: list[tuple[int, int, float, str]] = []
    for split in SPLITS:
        path = _require(annotations_dir, f"consolidated_{split}_list.mat", d)
        table = loadmat(str(path))[f"consolidated_{split}_list"]
        for values in table:
            class_index, sample = int(values[0]), int(values[1])
            if class_index not in _AQA7_CLASSES:
                raise ManifestError(f"{d}: {path} has class index {class_index}, expected 1-6")
            entries.append((class_index, sample, float(values[2]), split))

    def in_published_range(divisor: float) -> bool:
        return all(
            _AQA7_CLASSES[c][2][0] - 1e-6 <= score / divisor <= _AQA7_CLASSES[c][2][1] + 1e-6
            for c, _, score, _ in entries
        )

    divisor = next((x for x in (1.0, 100.0) if in_published_range(x)), None)
    if divisor is None:
        ranges = {name: score_range for name, _, score_range in _AQA7_CLASSES.values()}
        raise ManifestError(
            f"{d}: scores in {annotations_dir} fall outside the published per-class ranges "
            f"{ranges} both as stored and divided by 100"
        )
    rows = [
        ManifestRow(
            id=f"{_AQA7_CLASSES[c][0]}_{sample:03d}",
            video=f"{_AQA7_CLASSES[c][1]}/{sample:03d}",
            start_frame=None,
            end_frame=None,
            split=split,
            score=score / divisor,
            action_class=_AQA7_CLASSES[c][0],
        )
        for c, sample, score, split in sorted(entries)
    ]
    return Manifest(d, rows)


def build_finediving(annotations_dir: Path) -> Manifest:
    """FineDiving: ``FineDiving_coarse_annotation.pkl`` keyed by (event, index) + ``{train,test}_split.pkl``.

    Judge panels differ between competitions (3, 5 or 7 judges listed), so ``judge4..7`` may be empty."""
    d = "finediving"
    annotations = _load_pickle(_require(annotations_dir, "FineDiving_coarse_annotation.pkl", d))
    train = set(_load_pickle(_require(annotations_dir, "train_split.pkl", d)))
    test = set(_load_pickle(_require(annotations_dir, "test_split.pkl", d)))
    rows = []
    for (event, index), a in sorted(annotations.items()):
        if "__" in event:
            raise ManifestError(f"{d}: event name {event!r} contains '__', which the id convention reserves")
        rows.append(
            ManifestRow(
                id=f"{event}__{index}",
                video=event,
                start_frame=int(a["start_frame"]),
                end_frame=int(a["end_frame"]),
                split=_split_of((event, index), train, test, d),
                score=float(a["dive_score"]),
                difficulty=float(a["difficulty"]),
                action_class=str(a["action_type"]).upper(),
                subscores=_judges(a["judge_scores"]),
            )
        )
    return Manifest(d, rows, subscore_names=tuple(f"judge{i}" for i in range(1, 8)))


def _read_table(path: Path, dataset: str, columns: int, header: bool) -> list[list[str]]:
    """Whitespace-separated rows with a fixed number of fields; blank lines are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()[1 if header else 0 :]
    table = []
    for number, line in enumerate(lines, start=2 if header else 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise ManifestError(
                f"{dataset}: {path} line {number} has {len(fields)} fields, expected {columns}"
            )
        table.append(fields)
    return table


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ManifestError(f"{where}: {text!r} is not a number") from None


def build_rhythmic_gymnastics(annotations_dir: Path) -> Manifest:
    """Rhythmic Gymnastics (ACTION-NET): ``{train,test}.txt`` with Video_Name, Difficulty_Score,
    Execution_Score, Total_Score, Penalty, Video_length. The apparatus (Video_Name prefix) is the class."""
    d = "rhythmic-gymnastics"
    rows = []
    for split in SPLITS:
        path = _require(annotations_dir, f"{split}.txt", d)
        for name, difficulty, execution, total, penalty, _length in _read_table(path, d, 6, header=True):
            where = f"{d}: {path} sample {name}"
            rows.append(
                ManifestRow(
                    id=name,
                    video=name,
                    start_frame=None,
                    end_frame=None,
                    split=split,
                    score=_float(total, where),
                    action_class=name.split("_")[0].lower(),
                    subscores={
                        "difficulty_score": _float(difficulty, where),
                        "execution": _float(execution, where),
                        "penalty": _float(penalty, where),
                    },
                )
            )
    rows.sort(key=lambda r: (r.action_class, r.id))
    return Manifest(d, rows, subscore_names=("difficulty_score", "execution", "penalty"))


def build_fis_v(annotations_dir: Path) -> Manifest:
    """Fis-V: ``{train,test}_dataset.txt`` (``id TES PCS deductions``) give the split and sub-scores;
    ``fs_dataset.csv`` gives the total. The published totals are kept as they are, but where one disagrees
    with TES + PCS - deductions (the ISU rule) a warning names the samples."""
    d = "fis-v"
    csv_path = _require(annotations_dir, "fs_dataset.csv", d)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        totals = {
            r[0].strip(): r[1].strip() for r in list(csv.reader(handle))[1:] if len(r) > 1 and r[1].strip()
        }
    rows, disagreeing = [], []
    for split in SPLITS:
        path = _require(annotations_dir, f"{split}_dataset.txt", d)
        for number, tes, pcs, deductions in _read_table(path, d, 4, header=False):
            where = f"{d}: {path} video {number}"
            if number not in totals:
                raise ManifestError(f"{where}: no total score in {csv_path}")
            subscores = {
                "tes": _float(tes, where),
                "pcs": _float(pcs, where),
                "deductions": _float(deductions, where),
            }
            total = _float(totals[number], f"{d}: {csv_path} video {number}")
            if abs(subscores["tes"] + subscores["pcs"] - subscores["deductions"] - total) > 0.015:
                disagreeing.append(number)
            rows.append(
                ManifestRow(
                    id=number,
                    video=number,
                    start_frame=None,
                    end_frame=None,
                    split=split,
                    score=total,
                    subscores=subscores,
                )
            )
    if disagreeing:
        warnings.warn(
            f"{d}: {csv_path} total differs from tes + pcs - deductions for videos "
            f"{', '.join(sorted(disagreeing, key=int))}; the published totals are kept",
            stacklevel=2,
        )
    rows.sort(key=lambda r: int(r.id))
    return Manifest(d, rows, subscore_names=("tes", "pcs", "deductions"))


def build_mit_skating(annotations_dir: Path) -> Manifest:
    """MIT-Skating (Pirsiavash et al. 2014): ``annotations.txt`` with name, total, TES, PCS, start and end
    frame. There is no official split file, so every sample is marked ``train``; evaluate it with
    cross-validation (as the literature does), never on a split invented here."""
    d = "mit-skating"
    path = _require(annotations_dir, "annotations.txt", d)
    rows = []
    for name, total, tes, pcs, start, end in _read_table(path, d, 6, header=False):
        where = f"{d}: {path} sample {name}"
        prefix, _, source = name.partition("_")
        if not prefix.isdigit() or not source:
            raise ManifestError(f"{where}: expected a name of the form '<n>_<source video>'")
        rows.append(
            ManifestRow(
                id=name,
                video=source,
                start_frame=int(_float(start, where)),
                end_frame=int(_float(end, where)),
                split="train",
                score=_float(total, where),
                subscores={"tes": _float(tes, where), "pcs": _float(pcs, where)},
            )
        )
    return Manifest(d, rows, subscore_names=("tes", "pcs"))


BUILDERS: dict[str, Callable[[Path], Manifest]] = {
    "mtl-aqa": build_mtl_aqa,
    "aqa-7": build_aqa_7,
    "finediving": build_finediving,
    "rhythmic-gymnastics": build_rhythmic_gymnastics,
    "fis-v": build_fis_v,
    "mit-skating": build_mit_skating,
}


def build_manifest(name: str, annotations_dir: str | os.PathLike) -> Manifest:
    """Build a dataset's manifest from its official annotation files and check the published split sizes.

    ``annotations_dir`` is the dataset's own folder (``.../annotations/fis-v``) or the folder holding one
    sub-folder per dataset (``.../annotations``)."""
    if name not in BUILDERS:
        raise ManifestError(f"unknown dataset {name!r}: known datasets are {', '.join(DATASETS)}")
    folder = Path(annotations_dir)
    if (folder / name).is_dir():
        folder = folder / name
    if not folder.is_dir():
        raise ManifestError(f"{name}: annotation folder {folder} does not exist")
    manifest = BUILDERS[name](folder)
    manifest.source = str(folder)
    counts, expected = manifest.split_counts(), EXPECTED_SPLIT_COUNTS[name]
    if counts != expected:
        raise ManifestError(
            f"{name}: the annotation files in {folder} give split sizes {counts}, "
            f"but the published split is {expected}"
        )
    return manifest
