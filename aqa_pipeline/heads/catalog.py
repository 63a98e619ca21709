"""What ``aqa-fit --list-heads`` and ``--show-options HEAD`` print: each head's one-line description and its
options with their defaults and provenance.

The provenance is the comment written beside each default in the head's ``Options`` (``# code``, ``# paper``,
``# chosen: ...``) or the comment block just above it, read from the source, so the code stays the one place
where a default and its justification are written down.
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
from dataclasses import asdict, dataclass
from typing import Any

from aqa_pipeline.heads.registry import get_head, head_names


@dataclass
class HeadInfo:
    name: str
    summary: str  # first line of the head's docstring
    uses_validation: bool
    extra_roles: dict[str, tuple[str, ...]]


@dataclass
class OptionInfo:
    name: str
    default: Any
    provenance: str  # the comment beside (or above) the default; "" when none was written
    defined_in: str  # head class whose Options set it (a head inherits the shared loop's options)


def list_heads() -> list[HeadInfo]:
    infos = []
    for name in head_names():
        cls = get_head(name)
        doc = cls.__doc__ or inspect.getmodule(cls).__doc__ or ""
        summary = next((line.strip() for line in doc.splitlines() if line.strip()), "")
        infos.append(HeadInfo(name, summary, cls.uses_validation, dict(cls.extra_roles)))
    return infos


def head_options(name: str) -> list[OptionInfo]:
    """Every option of a head, its own first: the most specific class's default and comment win."""
    head = get_head(name)
    defaults = asdict(head.Options())
    options: dict[str, OptionInfo] = {}
    for klass in head.__mro__:
        if "Options" not in vars(klass):
            continue
        notes = _field_comments(klass.Options)
        for key in vars(klass.Options).get("__annotations__", {}):
            options.setdefault(key, OptionInfo(key, defaults[key], notes.get(key, ""), klass.__name__))
    return list(options.values())


def _field_comments(options_type: type) -> dict[str, str]:
    """Option name → the comment on its field's line in ``class Options`` or, failing that, the block above it."""
    try:
        source = textwrap.dedent(inspect.getsource(options_type))
    except (OSError, TypeError):
        return {}
    comments, own_line = _comments_by_line(source)
    class_body = ast.parse(source).body[0].body
    return {
        node.target.id: comments.get(node.end_lineno) or _block_above(own_line, node.lineno)
        for node in class_body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _comments_by_line(source: str) -> tuple[dict[int, str], dict[int, str]]:
    """Comments by line number: all of them, and those alone on their line (which can head a block)."""
    found, own_line = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
            if token.line.strip().startswith("#"):
                own_line[token.start[0]] = found[token.start[0]]
    return found, own_line


def _block_above(comments: dict[int, str], line: int) -> str:
    block = []
    while line - 1 in comments:
        line -= 1
        block.insert(0, comments[line])
    return " ".join(block)
