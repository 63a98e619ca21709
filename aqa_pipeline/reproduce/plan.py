"""Which features and heads reproduce each dataset's seed papers, as data.

A head runs on the features its paper used (that paper's preset and encoder), with the protocol switches of its
paper's code (``--use-dd`` for the diving heads). Where our run necessarily differs from the paper (a stream we
cannot build from clip features alone), the difference is written in ``variant`` and printed in the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aqa_pipeline.encoders.registry import default_encoder
from aqa_pipeline.heads.registry import head_names
from aqa_pipeline.manifests import DATASETS
from aqa_pipeline.video.presets import DATASET_PRESETS

DIVING_DD = ("--use-dd",)
NO_ACTOR = ("--set", "use_actor=false")


@dataclass(frozen=True)
class FeatureStage:
    """One feature store: an encoder run with a preset over the dataset's videos."""

    encoder: str
    preset: str

    @property
    def name(self) -> str:
        return f"{self.encoder}-{self.preset}"


@dataclass(frozen=True)
class HeadRun:
    """One head of one paper, trained on each target, under both protocols."""

    head: str
    features: FeatureStage
    targets: tuple[str, ...] = ("score",)
    fit_args: tuple[str, ...] = ()
    variant: str = (
        ""  # how this run differs from the paper's own, "" when it does not (beyond frozen features)
    )
    not_run: str = ""  # why the head cannot run here yet ("" = it runs)


@dataclass(frozen=True)
class DatasetPlan:
    dataset: str
    heads: tuple[HeadRun, ...]
    release: str | None = (
        None  # published features ``FEATURES=DIR`` can start from (an ``aqa-import`` release)
    )

    @property
    def stages(self) -> tuple[FeatureStage, ...]:
        """The feature stores the runnable heads need, each once, in first-use order."""
        return tuple(dict.fromkeys(run.features for run in self.heads if not run.not_run))

    def runnable(self) -> tuple[HeadRun, ...]:
        return tuple(run for run in self.heads if not run.not_run)


CORE = FeatureStage("i3d", "mtl-aqa")
MUSDL = FeatureStage("i3d", "mtl-aqa-musdl")
TPT = FeatureStage("i3d", "tpt")
AQA7 = FeatureStage("i3d", "aqa-7")
FINEDIVING = FeatureStage("i3d", "finediving")
GDLT = FeatureStage("swin3d-b", "gdlt")
ACTION_NET = FeatureStage("i3d", "action-net")

TSA_NOT_RUN = (
    "needs I3D maps and athlete tube boxes (aqa-extract --maps --boxes), not wired into reproduce yet"
)
ACTION_NET_VARIANT = "dynamic stream only: the static stream needs person crops (aqa-extract --crops)"
FSPN_VARIANT = (
    "without the actor stream (use_actor=false): it needs tracked athlete clips (aqa-extract --actor)"
)

AQA7_VARIANT = "one model over the six classes, scored per class (CoRe and TPT train one per class)"
RG_VARIANT = "one model over the four apparatus, scored per apparatus (the papers train one per apparatus)"


def _long_videos(targets: tuple[str, ...], variant: str = "") -> tuple[HeadRun, ...]:
    return (
        HeadRun(
            "action-net", ACTION_NET, targets, variant="; ".join(filter(None, (ACTION_NET_VARIANT, variant)))
        ),
        HeadRun("gdlt", GDLT, targets, variant=variant),
        HeadRun("weight-score", GDLT, targets, variant=variant),
    )


PLANS: dict[str, DatasetPlan] = {
    plan.dataset: plan
    for plan in [
        DatasetPlan(
            "mtl-aqa",
            (
                HeadRun("usdl", MUSDL),
                HeadRun("musdl", MUSDL),
                HeadRun("core", CORE, fit_args=DIVING_DD),
                HeadRun("tpt", TPT, fit_args=DIVING_DD),
                HeadRun("tsa", CORE, not_run=TSA_NOT_RUN),
                HeadRun("fspn", CORE, fit_args=DIVING_DD + NO_ACTOR, variant=FSPN_VARIANT),
            ),
        ),
        DatasetPlan(
            "aqa-7",
            (
                HeadRun("usdl", AQA7, variant=AQA7_VARIANT),
                HeadRun("core", AQA7, variant=AQA7_VARIANT),
                HeadRun("tpt", TPT, variant=AQA7_VARIANT),
                HeadRun("tsa", AQA7, not_run=TSA_NOT_RUN),
            ),
        ),
        DatasetPlan(
            "finediving",
            (
                HeadRun("core", FINEDIVING, fit_args=DIVING_DD),
                HeadRun("tpt", FINEDIVING, fit_args=DIVING_DD),
                HeadRun("fspn", FINEDIVING, fit_args=DIVING_DD + NO_ACTOR, variant=FSPN_VARIANT),
            ),
        ),
        DatasetPlan("rhythmic-gymnastics", _long_videos(("score",), RG_VARIANT), release="gdlt-vst"),
        DatasetPlan("fis-v", _long_videos(("tes", "pcs")), release="gdlt-vst"),
    ]
}
REPRODUCIBLE = tuple(PLANS)


def get_plan(dataset: str) -> DatasetPlan:
    if dataset not in PLANS:
        known = ", ".join(REPRODUCIBLE)
        other = " (it has no seed-paper table)" if dataset in DATASETS else ""
        raise ValueError(f"no reproduction plan for dataset {dataset!r}{other}: choose one of {known}")
    return PLANS[dataset]


def restrict(plan: DatasetPlan, heads: tuple[str, ...]) -> DatasetPlan:
    """Only ``heads``, in that order; a registered head the papers did not use (a baseline such as ``ridge``)
    runs on the dataset's default features (those of ``aqa-extract --dataset``), a cheap row beside the papers'."""
    unknown = [head for head in heads if head not in head_names()]
    if unknown:
        raise ValueError(f"--heads: unknown heads {unknown}; available: {', '.join(head_names())}")
    by_head: dict[str, list[HeadRun]] = {}
    for run in plan.heads:
        by_head.setdefault(run.head, []).append(run)
    default = FeatureStage(default_encoder(plan.dataset), DATASET_PRESETS[plan.dataset])
    targets = plan.heads[0].targets
    chosen = [run for head in heads for run in by_head.get(head, [HeadRun(head, default, targets)])]
    return dataclasses.replace(plan, heads=tuple(chosen))


def with_features(plan: DatasetPlan, encoder: str | None = None, preset: str | None = None) -> DatasetPlan:
    """Every stage with another encoder and/or preset: for a paper encoder without weights on this machine, or
    a test's cheap one. The table's features column shows what was used."""
    heads = tuple(
        dataclasses.replace(
            run,
            features=FeatureStage(encoder or run.features.encoder, preset or run.features.preset),
        )
        for run in plan.heads
    )
    return dataclasses.replace(plan, heads=heads)
