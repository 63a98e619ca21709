"""``aqa-store``: check a feature store for corruption, repair it, or summarise it."""

from __future__ import annotations

import sys

import click

from aqa_pipeline.cli.errors import AqaGroup

STORE_ARGUMENT = click.argument("store", type=click.Path(dir_okay=False))


@click.group(cls=AqaGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Check, repair and summarise feature stores.

    \b
    Examples:
      aqa-store check runs/fisv/features.h5     # every shard, every video's checksum; exit 1 on problems
      aqa-store repair runs/fisv/features.h5    # drop leftovers and corrupt videos, rebuild the index
      aqa-store info runs/fisv/features.h5
    """


@main.command()
@STORE_ARGUMENT
def check(store: str) -> None:
    """Verify every shard and video checksum; exit status 1 when anything is corrupt or inconsistent."""
    from aqa_pipeline.store.doctor import check_store

    _report_health(check_store(store))


@main.command()
@STORE_ARGUMENT
def repair(store: str) -> None:
    """Remove leftovers of killed runs, drop corrupt videos and unreadable shards, rebuild the index."""
    from aqa_pipeline.store.doctor import check_store, repair_store

    for action in repair_store(store):
        click.echo(action)
    _report_health(check_store(store))


def _report_health(health) -> None:
    """Print a check's findings; exit status 1 when the store still has problems."""
    click.echo("\n".join(health.lines()))
    if not health.ok:
        sys.exit(1)


@main.command()
@STORE_ARGUMENT
def info(store: str) -> None:
    """Dataset, splits, feature kinds (encoder, dimension) and shards of a store."""
    from aqa_pipeline.store.doctor import store_info

    click.echo("\n".join(store_info(store)))


if __name__ == "__main__":
    main()
