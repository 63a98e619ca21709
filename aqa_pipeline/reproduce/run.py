"""One reproduction, start to finish: the request, the checks that come before any work, the stages, the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from aqa_pipeline.manifests import Manifest, load_manifest
from aqa_pipeline.reproduce.folder import check_folder
from aqa_pipeline.reproduce.papers import numbers_for
from aqa_pipeline.reproduce.plan import DatasetPlan, get_plan, restrict, with_features
from aqa_pipeline.reproduce.stages import Layout, Log, Settings, StageCounts, check_sets, run_plan
from aqa_pipeline.reproduce.table import build_rows, write_table

PUBLISHED = "published"


@dataclass(frozen=True)
class Request:
    dataset: str
    source: Path  # the video folder, or the published features' folder when ``published``
    published: bool
    out: Path
    seeds: int = 3
    heads: tuple[str, ...] = ()  # () = the papers' heads
    head_sets: tuple[str, ...] = ()
    encoder: str | None = None
    preset: str | None = None
    device: str = "cpu"
    threads: int | None = None
    jobs: int = 1
    init_box: str | None = None
    detector_weights: str | None = None


@dataclass(frozen=True)
class Outcome:
    dataset: str
    source: str  # the folder check's summary line
    table: Path
    csv: Path
    rows: int
    features: StageCounts
    fits: StageCounts

    def summary(self) -> str:
        return (
            f"{self.source}\n"
            f"features: {self.features.ran} built, {self.features.skipped} already done; "
            f"runs: {self.fits.ran} trained, {self.fits.skipped} already done\n"
            f"{self.rows} rows → {self.table} and {self.csv}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def plan_for(request: Request) -> DatasetPlan:
    """The dataset's plan, narrowed to ``--heads`` and moved onto other features where asked."""
    plan = get_plan(request.dataset)
    if request.heads:
        plan = restrict(plan, request.heads)
    if request.published:
        if plan.release is None:
            raise ValueError(f"--features: no published feature release is wired for {request.dataset}")
        if request.encoder or request.preset:
            raise ValueError("--encoder/--preset choose how features are extracted: not with --features")
        return with_features(plan, encoder=plan.release, preset=PUBLISHED)
    if request.encoder or request.preset:
        plan = with_features(plan, encoder=request.encoder, preset=request.preset)
    return plan


def check_tracking(plan: DatasetPlan, request: Request) -> None:
    """Refuse --init-box / --detector-weights where no stage tracks the athlete: they would be ignored."""
    if (request.init_box or request.detector_weights) and not any(stage.athlete for stage in plan.stages):
        raise ValueError(
            f"--init-box/--detector-weights: no feature stage of {plan.dataset} tracks or detects the athlete here"
        )


def check_published(manifest: Manifest, folder: Path) -> str:
    """Published releases may cover only some splits; refuse one that covers none of the manifest."""
    found = {row.split for row in manifest.rows if (folder / f"{row.id}.npy").is_file()}
    counts = {
        split: sum((folder / f"{row.id}.npy").is_file() for row in manifest.split(split))
        for split in manifest.split_counts()
    }
    if not found:
        raise FileNotFoundError(f"{manifest.name}: {folder} holds no <id>.npy file of any manifest sample")
    shown = ", ".join(f"{split} {counts[split]}/{n}" for split, n in sorted(manifest.split_counts().items()))
    note = "" if "test" in found else " (no test split: every head is scored by cross-validation on train)"
    return f"{manifest.name}: {folder}: samples with published features: {shown}{note}"


def check_source(request: Request, manifest: Manifest) -> str:
    """The source folder against the manifest, before any work: refuses an incomplete video folder."""
    if request.published:
        return check_published(manifest, request.source)
    check = check_folder(manifest, request.source)
    if not check.complete:
        raise FileNotFoundError(check.refusal())
    return check.summary()


def reproduce(request: Request, log: Log) -> Outcome:
    plan = plan_for(request)
    check_sets(plan, request.head_sets)
    check_tracking(plan, request)
    source = check_source(request, load_manifest(request.dataset))
    log(source)
    layout = Layout(request.out / request.dataset)
    settings = Settings(request.seeds, request.head_sets, request.device, request.threads, request.jobs,
                        request.init_box, request.detector_weights)  # fmt: skip
    numbers = numbers_for(request.dataset)
    features, fits = run_plan(plan, request.source, layout, settings, log, request.published, numbers)
    rows = build_rows(plan, numbers, layout, settings)
    table, csv_path = write_table(rows, request.dataset, layout)
    return Outcome(request.dataset, source, table, csv_path, len(rows), features, fits)
