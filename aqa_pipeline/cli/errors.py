"""One-line errors for every CLI: expected failures (a bad store, manifest, option, missing weights, unreadable
file) end as ``Error: <message>`` on stderr with exit status 1; ``--debug`` shows the traceback instead.

Use ``@click.command(cls=AqaCommand)`` or ``@click.group(cls=AqaGroup)`` (its sub-commands get ``--debug`` too).
Anything else (a bug) still raises with its traceback.
"""

from __future__ import annotations

import click

from aqa_pipeline.ray_cluster import RayMissingError
from aqa_pipeline.store.schema import StoreError

DEBUG_KEY = "aqa.debug"
# ValueError covers ManifestError, OptionError and the protocol's refusals; OSError covers missing weights
# (WeightsNotFoundError), unreadable files and a full disk.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (StoreError, ValueError, OSError, RayMissingError)


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG_KEY] = True


def _debug_option() -> click.Option:
    return click.Option(
        ["--debug"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_remember_debug,
        help="Show the full traceback when something fails.",
    )


def _invoke_reporting(ctx: click.Context, invoke) -> object:
    try:
        return invoke(ctx)
    except EXPECTED_ERRORS as error:
        if ctx.meta.get(DEBUG_KEY):
            raise
        message = str(error) or type(error).__name__
        raise click.ClickException(f"{message}\n(--debug shows the traceback)") from error


class AqaCommand(click.Command):
    """A command whose expected errors are one line on stderr and a non-zero exit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_debug_option())

    def invoke(self, ctx: click.Context):
        return _invoke_reporting(ctx, super().invoke)


class AqaGroup(click.Group):
    """A group whose sub-commands are ``AqaCommand``s; ``--debug`` works before or after the sub-command."""

    command_class = AqaCommand

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_debug_option())

    def invoke(self, ctx: click.Context):
        return _invoke_reporting(ctx, super().invoke)
