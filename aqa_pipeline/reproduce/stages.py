"""Running a dataset's plan: features (``aqa-extract``, or ``aqa-import`` of published ones), then every head
under both protocols (``aqa-fit``), each stage skipped when a previous run finished it.

The stages call the very commands a user would type, in-process (one torch import for the whole table), and log
each command line so any cell of the table can be re-run by hand. A finished extraction leaves
``<store>.done`` beside its store; a finished run leaves ``metrics.json`` in its run directory. An interrupted
run continues with ``aqa-fit --resume`` from the fits it finished (aqa-extract itself keeps the videos it
finished), and so does a finished run asked for more seeds. A run whose fits were made with other head options
(a default changed since, another ``--set``) is redone from scratch, never kept as if current.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from aqa_pipeline.reproduce.papers import PaperNumber
from aqa_pipeline.reproduce.plan import DatasetPlan, FeatureStage, HeadRun
from aqa_pipeline.reproduce.sharing import honest_from_paper

PROTOCOLS = ("honest", "paper")
Log = Callable[[str], None]


class StageError(RuntimeError):
    """A stage's command failed; the message names the command and its error."""


@dataclass(frozen=True)
class Layout:
    """Where one dataset's reproduction writes: ``<out>/<dataset>/{features,runs}/``, TABLE.md, table.csv."""

    root: Path

    def store(self, stage: FeatureStage) -> Path:
        return self.root / "features" / f"{stage.name}.h5"

    def run_dir(self, run: HeadRun, target: str, protocol: str) -> Path:
        return self.root / "runs" / f"{run.head}-{target}-{protocol}"


@dataclass(frozen=True)
class Settings:
    """What every stage shares: seeds, head option overrides, device, threads and parallel fits, and how the
    athlete is found for the stages that track it."""

    seeds: int = 3
    head_sets: tuple[str, ...] = ()  # KEY=VALUE, given to each head that has the option
    device: str = "cpu"
    threads: int | None = None
    jobs: int = 1  # aqa-fit --jobs: folds × seeds in this many worker processes
    init_box: str | None = None  # aqa-extract --init-box: the athlete's first-frame box(es) for tracking
    detector_weights: str | None = None  # aqa-extract --detector-weights: the athlete where no box is given


@dataclass(frozen=True)
class StageCounts:
    """What this invocation did, for the summary: done now versus found finished."""

    ran: int = 0
    skipped: int = 0

    def add(self, ran: bool) -> StageCounts:
        return StageCounts(self.ran + ran, self.skipped + (not ran))


def _invoke(command: click.Command, prog: str, args: list[str], log: Log) -> None:
    """Run an ``aqa-*`` command in-process, its own output on stderr; a failure becomes a StageError."""
    log(f"$ {prog} {shlex.join(args)}")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            command.main(args=args, prog_name=prog, standalone_mode=False)
    except click.ClickException as error:
        raise StageError(f"{prog} failed: {error.format_message()}") from error
    except SystemExit as error:
        if error.code:
            raise StageError(f"{prog} exited with status {error.code} (see its messages above)") from error


def _finish(store: Path) -> None:
    store.with_name(store.name + ".done").touch()


def _finished(store: Path) -> bool:
    return store.with_name(store.name + ".done").is_file()


def extract(
    stage: FeatureStage, dataset: str, videos: Path, layout: Layout, settings: Settings, log: Log
) -> bool:
    """The stage's feature store from the videos, with its athlete kinds; False when a previous run finished it."""
    from aqa_pipeline.cli.extract import main

    store = layout.store(stage)
    if _finished(store):
        return False
    store.parent.mkdir(parents=True, exist_ok=True)
    args = ["--dataset", dataset, "--video-root", str(videos), "--out", str(store)]
    args += ["--encoder", stage.encoder, "--preset", stage.preset, "--device", settings.device]
    if stage.athlete:
        args += stage.extract_flags()
        args += ["--init-box", settings.init_box] if settings.init_box else []
        args += ["--detector-weights", settings.detector_weights] if settings.detector_weights else []
    _invoke(main, "aqa-extract", args, log)
    _finish(store)
    return True


def import_published(stage: FeatureStage, dataset: str, features: Path, layout: Layout, log: Log) -> bool:
    """The published features (``stage.encoder`` names the release) as a store; False when already imported."""
    from aqa_pipeline.cli.import_features import main

    store = layout.store(stage)
    if _finished(store):
        return False
    store.parent.mkdir(parents=True, exist_ok=True)
    args = ["--dataset", dataset, "--features-dir", str(features), "--out", str(store)]
    _invoke(main, "aqa-import", [*args, "--release", stage.encoder], log)
    _finish(store)
    return True


def options_for(head: str, head_sets: tuple[str, ...]) -> list[str]:
    """The ``--set`` arguments among ``head_sets`` that ``head`` has an option for."""
    from aqa_pipeline.heads.catalog import head_options

    names = {option.name for option in head_options(head)}
    return [arg for item in head_sets if item.split("=", 1)[0] in names for arg in ("--set", item)]


def check_sets(plan: DatasetPlan, head_sets: tuple[str, ...]) -> None:
    """Refuse a ``--set KEY=VALUE`` that no head of the plan has: a typo must not run a silent full table."""
    for item in head_sets:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        if not any(options_for(run.head, (item,)) for run in plan.runnable()):
            heads = ", ".join(run.head for run in plan.runnable())
            raise ValueError(f"--set {item!r}: none of the heads ({heads}) has option {item.split('=')[0]!r}")


def fit_options(run: HeadRun, settings: Settings) -> list[str]:
    """What aqa-fit gets for ``run`` beyond the store, target and protocol: the plan's flags, then ``--set``."""
    return [*run.fit_args, *options_for(run.head, settings.head_sets)]


def finished(out: Path, seeds: int) -> bool:
    """Whether the run at ``out`` finished with exactly ``seeds`` seeds (aqa-fit's default first seed)."""
    if not (out / "metrics.json").is_file():
        return False
    return json.loads((out / "config.json").read_text())["seeds"] == list(range(seeds))


def outdated_options(out: Path, head: str, args: list[str]) -> list[str]:
    """``option: old → new`` for each head option the fits kept at ``out`` were made with that this invocation
    would change (a default changed by an upgrade, or another ``--set``); empty when nothing is kept there."""
    from aqa_pipeline.cli.fit import parse_set
    from aqa_pipeline.heads.registry import get_head
    from aqa_pipeline.train.journal import differences, with_new_options

    kept = out / "fits" / "settings.json"
    if not kept.is_file():
        return []
    head_cls = get_head(head)
    old = with_new_options(json.loads(kept.read_text())["fit"]["head_options"], head_cls.resolved_options({}))
    sets = tuple(value for flag, value in zip(args, args[1:], strict=False) if flag == "--set")
    return differences(old, head_cls.resolved_options(parse_set(sets)))


def fit(run: HeadRun, target: str, protocol: str, layout: Layout, settings: Settings, log: Log) -> bool:
    """One head, target and protocol over all seeds; False when it already finished with these seeds and
    options. A run kept with other head options is redone from scratch, and the log says which options."""
    from aqa_pipeline.cli.fit import main

    out = layout.run_dir(run, target, protocol)
    options = fit_options(run, settings)
    outdated = outdated_options(out, run.head, options)
    if outdated:
        log(f"{out.name}: redone from scratch, it was made with other head options ({'; '.join(outdated)})")
    elif finished(out, settings.seeds):
        return False
    args = ["--head", run.head, str(layout.store(run.features)), "--target", target, "--protocol", protocol]
    args += ["--seeds", str(settings.seeds), "--out", str(out), "--no-final-model", "--quiet"]
    args += ["--feature", run.input_kind()] if run.features.athlete else []  # the store holds several kinds
    args += [*options, "--device", settings.device]
    args += ["--threads", str(settings.threads)] if settings.threads else []
    args += ["--jobs", str(settings.jobs)]
    _invoke(main, "aqa-fit", [*args, "--overwrite" if outdated else "--resume"], log)
    return True


def planned_runs(
    plan: DatasetPlan, settings: Settings, numbers: list[PaperNumber], log: Log
) -> list[tuple[HeadRun, str, str]]:
    """(head, target, protocol) of every run to train: both protocols, less the honest runs that would be the
    paper runs' very fits, whose cells are read from those (:mod:`.sharing`)."""
    runs = []
    for run in plan.runnable():
        for target in run.targets:
            if honest_from_paper(run, target, numbers, fit_options(run, settings)):
                log(
                    f"{run.head} · {target} · honest: read from its paper-protocol run's last epoch (same fits)"
                )
                runs.append((run, target, "paper"))
            else:
                runs += [(run, target, protocol) for protocol in PROTOCOLS]
    return runs


def run_plan(
    plan: DatasetPlan,
    source: Path,
    layout: Layout,
    settings: Settings,
    log: Log,
    published: bool,
    numbers: list[PaperNumber],
) -> tuple[StageCounts, StageCounts]:
    """Features then fits; ``source`` is the video folder, or the published features when ``published``. An
    honest run that would train the paper run's very fits is not trained (:mod:`.sharing`)."""
    features = StageCounts()
    for stage in plan.stages:
        if published:
            features = features.add(import_published(stage, plan.dataset, source, layout, log))
        else:
            features = features.add(extract(stage, plan.dataset, source, layout, settings, log))
    fits = StageCounts()
    runs = planned_runs(plan, settings, numbers, log)
    for number, (run, target, protocol) in enumerate(runs, start=1):
        started = time.perf_counter()
        ran = fit(run, target, protocol, layout, settings, log)
        outcome = finished_line(layout.run_dir(run, target, protocol), started) if ran else "already done"
        log(f"[{number}/{len(runs)}] {run.head} · {target} · {protocol}: {outcome}")
        fits = fits.add(ran)
    return features, fits


def finished_line(out: Path, started: float) -> str:
    """How long a run took and its headline, for the progress log of a table that takes hours."""
    metrics = json.loads((out / "metrics.json").read_text())
    split = metrics["test" if "test" in metrics else "cv"]
    seeds = len(split["per_seed"])
    spread = f" ± {split['spearman_std']:.3f}" if seeds > 1 else ""  # as the table: one seed has no spread
    minutes = (time.perf_counter() - started) / 60
    return f"{minutes:.1f} min, Spearman {split['spearman']:.3f}{spread} ({seeds} seed{'s' * (seeds > 1)})"
