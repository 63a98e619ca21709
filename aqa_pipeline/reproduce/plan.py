"""Which features and heads reproduce each dataset's seed papers, as data.

A head runs on the features its paper used (that paper's preset and encoder), with the protocol switches of its
paper's code (``--use-dd`` for the diving heads). Where our run necessarily differs from the paper (a stream we
cannot build from clip features alone), the difference is written in ``variant`` and printed in the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aqa_pipeline.encoders.registry import default_encoder, get_entry
from aqa_pipeline.heads.registry import get_head, head_names
from aqa_pipeline.manifests import DATASETS
from aqa_pipeline.video.presets import DATASET_PRESETS

DIVING_DD = ("--use-dd",)
NO_ACTOR = ("--set", "use_actor=false")


# The aqa-extract flags of each athlete-centred kind, by the name a stage lists it under ("maps" also gets the
# TSA head's layer: see FeatureStage.extract_flags).
ATHLETE_FLAGS: dict[str, tuple[str, ...]] = {
    "maps": ("--maps",),
    "boxes": ("--boxes",),
    "actor": ("--actor",),
    # ACTION-NET's static stream: ResNet-50 on 1 fps crops of the largest person the detector finds
    "crops": ("--crops", "resnet50"),
}


@dataclass(frozen=True)
class FeatureStage:
    """One feature store: an encoder run with a preset over the dataset's videos, plus the athlete-centred
    kinds (``ATHLETE_FLAGS``) its heads need, extracted in the same pass so the clips are decoded once."""

    encoder: str
    preset: str
    athlete: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "-".join((self.encoder, self.preset)) + "".join(f"+{kind}" for kind in self.athlete)

    @property
    def clip_kind(self) -> str:
        """The store kind of the encoder's clip feature (the primary input of every head but TSA)."""
        return get_entry(self.encoder).kind

    def extract_flags(self) -> list[str]:
        flags = []
        for kind in self.athlete:
            flags += ATHLETE_FLAGS[kind]
            if kind == "maps":  # at the layer the TSA head reads by default, not aqa-extract's Mixed_4e
                flags += ["--maps-endpoint", get_head("tsa").parse_options({}).map_endpoint]
        return flags


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
    primary: str | None = None  # its input kind when not the encoder's clip kind (TSA: i3d_maps)
    needs: tuple[str, ...] = ()  # the athlete kinds of ``features`` it reads
    reduced: HeadRun | None = None  # what runs instead when those kinds cannot be built (published features)

    def input_kind(self) -> str:
        return self.primary or self.features.clip_kind

    def without_athlete(self, reason: str) -> HeadRun:
        """This run on features without athlete kinds: its reduced form, or not run, saying ``reason``."""
        if not self.needs:
            return self
        if self.reduced is None:
            return dataclasses.replace(self, not_run=f"needs {'+'.join(self.needs)} ({reason})")
        note = "; ".join(filter(None, (self.reduced.variant, reason)))
        return dataclasses.replace(self.reduced, features=self.features, targets=self.targets, variant=note)


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


CORE = FeatureStage("i3d", "mtl-aqa", athlete=("maps", "boxes", "actor"))  # + TSA's and FSPN's kinds
MUSDL = FeatureStage("i3d", "mtl-aqa-musdl")
TPT = FeatureStage("i3d", "tpt")
AQA7 = FeatureStage("i3d", "aqa-7", athlete=("maps", "boxes"))  # + TSA's
FINEDIVING = FeatureStage("i3d", "finediving", athlete=("actor",))  # + FSPN's
GDLT = FeatureStage("swin3d-b", "gdlt")
ACTION_NET = FeatureStage("i3d", "action-net", athlete=("crops",))  # + its static stream

ACTION_NET_VARIANT = "dynamic stream only (its static stream is cut from the videos)"
FSPN_VARIANT = "without the actor stream (use_actor=false)"

AQA7_VARIANT = "one model over the six classes, scored per class (CoRe and TPT train one per class)"
RG_VARIANT = "one model over the four apparatus, scored per apparatus (the papers train one per apparatus)"


def _tsa(stage: FeatureStage, variant: str = "") -> HeadRun:
    """TSA on the stage's I3D maps with tube masks from the tracked boxes; nothing replaces it without them."""
    return HeadRun("tsa", stage, variant=variant, primary="i3d_maps", needs=("maps", "boxes"))


def _fspn(stage: FeatureStage) -> HeadRun:
    """FSPN with its actor stream (I3D on clips re-cut around the tracked diver), else without it."""
    reduced = HeadRun("fspn", stage, fit_args=DIVING_DD + NO_ACTOR, variant=FSPN_VARIANT)
    return HeadRun("fspn", stage, fit_args=DIVING_DD, needs=("actor",), reduced=reduced)


def _long_videos(targets: tuple[str, ...], variant: str = "") -> tuple[HeadRun, ...]:
    """ACTION-NET with its static stream of person crops (else its dynamic stream alone), GDLT, weight-score."""
    dynamic_only = "; ".join(filter(None, (ACTION_NET_VARIANT, variant)))
    return (
        HeadRun(
            "action-net",
            ACTION_NET,
            targets,
            variant=variant,
            needs=("crops",),
            reduced=HeadRun("action-net", ACTION_NET, targets, variant=dynamic_only),
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
                _tsa(CORE),
                _fspn(CORE),
            ),
        ),
        DatasetPlan(
            "aqa-7",
            (
                HeadRun("usdl", AQA7, variant=AQA7_VARIANT),
                HeadRun("core", AQA7, variant=AQA7_VARIANT),
                HeadRun("tpt", TPT, variant=AQA7_VARIANT),
                _tsa(AQA7, AQA7_VARIANT),
            ),
        ),
        DatasetPlan(
            "finediving",
            (
                HeadRun("core", FINEDIVING, fit_args=DIVING_DD),
                HeadRun("tpt", FINEDIVING, fit_args=DIVING_DD),
                _fspn(FINEDIVING),
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
    encoder, preset = default_encoder(plan.dataset), DATASET_PRESETS[plan.dataset]
    same = [stage for stage in plan.stages if (stage.encoder, stage.preset) == (encoder, preset)]
    default = same[0] if same else FeatureStage(encoder, preset)  # a paper's store when it has those clips
    targets = plan.heads[0].targets
    chosen = [run for head in heads for run in by_head.get(head, [HeadRun(head, default, targets)])]
    return dataclasses.replace(plan, heads=tuple(chosen))


def with_features(plan: DatasetPlan, encoder: str | None = None, preset: str | None = None) -> DatasetPlan:
    """Every stage with another encoder and/or preset: for a paper encoder without weights on this machine, or
    a test's cheap one. The table's features column shows what was used. Another encoder (or a published
    release) drops the athlete kinds, which are cut with the paper's I3D: their heads run reduced or not at all."""

    def moved(run: HeadRun) -> HeadRun:
        stage = run.features
        keeps_athlete = encoder in (None, stage.encoder)
        features = FeatureStage(
            encoder or stage.encoder, preset or stage.preset, stage.athlete if keeps_athlete else ()
        )
        run = dataclasses.replace(run, features=features)
        return run if keeps_athlete else run.without_athlete(f"not with {encoder} features")

    return dataclasses.replace(plan, heads=tuple(moved(run) for run in plan.heads))
