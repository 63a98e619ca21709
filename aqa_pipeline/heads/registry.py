"""Heads by name. A head module registers itself with ``@register_head("name")``; ``get_head`` imports the
head modules lazily so that ``aqa-fit --help`` stays instant and one broken head cannot break the others."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for --help: keep torch out of it
    from aqa_pipeline.heads.base import Head

# name -> module that defines it (imported on first use)
HEAD_MODULES: dict[str, str] = {
    "svr": "aqa_pipeline.heads.baselines",
    "ridge": "aqa_pipeline.heads.baselines",
    "mlp": "aqa_pipeline.heads.baselines",
    "lstm": "aqa_pipeline.heads.baselines",
    "bilstm": "aqa_pipeline.heads.baselines",
    "usdl": "aqa_pipeline.heads.usdl",
    "musdl": "aqa_pipeline.heads.usdl",
    "tpt": "aqa_pipeline.heads.tpt",
    "core": "aqa_pipeline.heads.core",
    "action-net": "aqa_pipeline.heads.action_net",
    "gdlt": "aqa_pipeline.heads.gdlt",
    "weight-score": "aqa_pipeline.heads.weight_score",
    "tsa": "aqa_pipeline.heads.tsa",
    "nl-net": "aqa_pipeline.heads.tsa",
    "fspn": "aqa_pipeline.heads.fspn",
    "stack": "aqa_pipeline.heads.stack",
}
_REGISTERED: dict[str, type[Head]] = {}


def register_head(name: str):
    def decorate(cls: type[Head]) -> type[Head]:
        cls.name = name
        _REGISTERED[name] = cls
        return cls

    return decorate


def head_names() -> list[str]:
    return sorted(HEAD_MODULES)


def get_head(name: str) -> type[Head]:
    if name not in HEAD_MODULES:
        raise KeyError(f"unknown head {name!r}; available: {', '.join(head_names())}")
    if name not in _REGISTERED:
        importlib.import_module(HEAD_MODULES[name])
    return _REGISTERED[name]
