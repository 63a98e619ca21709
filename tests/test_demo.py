"""make demo's plan: every head it shows is paired with a synthetic kind it is built to learn, with valid options
(the demo itself runs for two minutes, so it is timed in the closing notes, not here)."""

from __future__ import annotations

from aqa_pipeline.demo import DEMO_HEADS, STAGE_ONE_WEIGHT_SCORE, SYNTHETIC
from aqa_pipeline.heads.registry import get_head
from aqa_pipeline.synth import KINDS


def test_every_demo_head_has_a_known_kind_and_valid_options():
    assert {h.kind for h in DEMO_HEADS} == set(KINDS) == set(SYNTHETIC)
    for head in DEMO_HEADS:
        get_head(head.name)(**head.options)  # refuses unknown names, wrong types and ranges
    get_head("weight-score")(**STAGE_ONE_WEIGHT_SCORE)
