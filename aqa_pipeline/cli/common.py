"""Options every ``aqa-*`` command shares, spelled the way the field spells them: ``--device cpu|cuda|cuda:N|mps``
(ultralytics, mmaction2) with ``--gpu N`` kept as an alias, ``--version``, ``--verbose`` and ``--json``.

Kept free of torch so that ``--help`` and ``--version`` stay instant; devices are checked against the machine only
when a command actually asks for CUDA or MPS.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import click

from aqa_pipeline import __version__

DEVICE_HELP = "cpu, cuda, cuda:N, mps, or a bare CUDA index N (as ultralytics' device=0)."
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?|\d+)$")


def parse_device(value: str) -> str:
    """The canonical torch device string for a ``--device`` value, refusing devices this machine lacks."""
    text = value.strip().lower()
    if not _DEVICE.match(text):
        raise click.BadParameter(f"{value!r}: expected {DEVICE_HELP}", param_hint="--device")
    if text.isdigit():
        text = f"cuda:{text}"
    if text == "cpu":
        return text
    import torch

    if text.startswith("cuda"):
        index = int(text.split(":")[1]) if ":" in text else 0
        if not torch.cuda.is_available():
            raise click.BadParameter(
                f"{value}: no CUDA device is available on this machine", param_hint="--device"
            )
        if index >= torch.cuda.device_count():
            raise click.BadParameter(
                f"{value}: this machine has {torch.cuda.device_count()} CUDA device(s)", param_hint="--device"
            )
    elif not torch.backends.mps.is_available():
        raise click.BadParameter(f"{value}: MPS is not available on this machine", param_hint="--device")
    return text


def device_option(default: str | None = "cpu") -> Callable:
    """``--device`` plus its alias ``--gpu N``; the command receives one ``device`` argument (a torch string, or
    ``None`` when neither was given and ``default`` is ``None``: a config file's device then stands)."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, device: str | None, gpu: int | None, **kwargs: Any) -> Any:
            if device is not None and gpu is not None:
                raise click.UsageError("give --device or its alias --gpu, not both")
            chosen = f"cuda:{gpu}" if gpu is not None else device or default
            return func(*args, device=None if chosen is None else parse_device(chosen), **kwargs)

        wrapper = click.option(
            "--gpu", type=click.IntRange(min=0), default=None, metavar="N", help="Alias of --device cuda:N."
        )(wrapper)
        shown = default or "cpu, or the --config file's device"
        return click.option("--device", default=None, help=f"{DEVICE_HELP} [default: {shown}]")(wrapper)

    return decorate


def version_option(func: Callable) -> Callable:
    """``--version``: the package version, as every installed tool answers it."""
    return click.version_option(__version__, "--version", message="%(prog)s (aqa-pipeline) %(version)s")(func)


def verbose_option(func: Callable) -> Callable:
    """``--verbose``/``-v``: log what each step does (per fold, per file) at INFO level instead of warnings only."""

    @functools.wraps(func)
    def wrapper(*args: Any, verbose: bool, **kwargs: Any) -> Any:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s", force=True
        )
        return func(*args, **kwargs)

    return click.option("--verbose", "-v", is_flag=True, help="Log each step (folds, files) as it happens.")(
        wrapper
    )


def json_option(func: Callable) -> Callable:
    """``--json``: one JSON object on stdout instead of the human summary, for scripts (progress stays on stderr)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the summary."
    )(func)


def engine_option(ray_does: str) -> Callable:
    """``--engine local|ray``; ``ray_does`` says what runs as Ray work in this command."""
    return click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help=f"ray: {ray_does}, on the cluster at --ray-address or a Ray started on this machine; needs "
        "pip install 'aqa-pipeline[ray]'.",
    )


def ray_address_option(func: Callable) -> Callable:
    """``--ray-address``: the Ray cluster an ``--engine ray`` command joins."""
    return click.option(
        "--ray-address",
        metavar="ADDR",
        help="With --engine ray: the cluster to join (auto, or head-node:6379 as `ray start --head` prints); "
        "default: a Ray started on this machine.",
    )(func)


def echo_json(value: Any) -> None:
    """The ``--json`` output: numpy scalars and paths become plain JSON values."""
    click.echo(json.dumps(value, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
