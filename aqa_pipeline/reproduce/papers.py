"""The seed papers' numbers, read from the packaged ``aqa_pipeline/data/paper_numbers.yaml``.

Kept as data with their citation (table and row) and how each number was obtained, so no number is ever typed
into a table by hand and an unverified one (``recalled``) always says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml

EVIDENCE = ("paper", "abstract", "quoted", "log", "recalled")


@dataclass(frozen=True)
class PaperNumber:
    dataset: str
    head: str
    target: str
    metric: str  # a dotted path into one seed's metrics (``spearman``, ``per_class.fisher_z_spearman``)
    value: float
    evidence: str
    citation: str
    table: str
    row: str

    def source(self) -> str:
        """The citation as the table prints it, flagged when the number was not checked against the paper."""
        flag = " [recalled: unverified]" if self.evidence == "recalled" else f" [{self.evidence}]"
        return f"{self.citation}; {self.table}; row {self.row}{flag}"


def _data_text() -> str:
    return (resources.files("aqa_pipeline") / "data" / "paper_numbers.yaml").read_text(encoding="utf-8")


def load_paper_numbers(text: str | None = None) -> list[PaperNumber]:
    """Every published number; an entry with an unknown paper or evidence is refused, naming the entry."""
    data = yaml.safe_load(_data_text() if text is None else text)
    citations = {head: paper["citation"] for head, paper in data["papers"].items()}
    numbers = []
    for index, entry in enumerate(data["numbers"], start=1):
        where = f"paper_numbers.yaml entry {index} ({entry.get('dataset')}/{entry.get('head')})"
        if entry.get("head") not in citations:
            raise ValueError(f"{where}: head {entry.get('head')!r} has no citation under 'papers'")
        if entry.get("evidence") not in EVIDENCE:
            raise ValueError(f"{where}: evidence {entry.get('evidence')!r}, expected one of {EVIDENCE}")
        numbers.append(PaperNumber(**entry, citation=citations[entry["head"]]))
    return numbers


def numbers_for(dataset: str) -> list[PaperNumber]:
    return [number for number in load_paper_numbers() if number.dataset == dataset]
