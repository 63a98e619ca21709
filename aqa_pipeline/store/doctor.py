"""``aqa-store`` as a library: check a store end to end, repair what can be repaired, summarise it.

``check`` opens every shard, verifies every video's checksum, cross-checks the shards (as an index rebuild does)
and lists leftovers of killed runs. ``repair`` removes those leftovers, moves unreadable shards aside, rewrites
shards with corrupt videos without them (through ``StoreWriter``, so the swap is checked like any publish) and
rebuilds the index; the dropped videos are reported so they can be extracted again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from aqa_pipeline.store.index import complete_shards, open_shard, rebuild_index, scan_shards
from aqa_pipeline.store.integrity import video_problems
from aqa_pipeline.store.locks import ShardLock
from aqa_pipeline.store.reader import FeatureStore
from aqa_pipeline.store.schema import PARTIAL_SUFFIX, StoreError, shards_dir
from aqa_pipeline.store.writer import COPY_SUFFIX, SHARD_NAME, StoreWriter


@dataclass
class ShardHealth:
    """One shard: how many videos it holds, and which are corrupt (id → reason) or whether it is unreadable."""

    path: Path
    videos: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    unreadable: str | None = None


@dataclass
class StoreHealth:
    index: Path
    shards: list[ShardHealth] = field(default_factory=list)
    cross_shard: str | None = None  # what an index rebuild would refuse
    index_problem: str | None = None
    unfinished: list[Path] = field(default_factory=list)  # partial shards a re-run resumes
    leftovers: list[Path] = field(default_factory=list)  # temp files of killed runs

    @property
    def ok(self) -> bool:
        bad_shards = any(s.corrupt or s.unreadable for s in self.shards)
        return not (bad_shards or self.cross_shard or self.index_problem)

    def lines(self) -> list[str]:
        lines = [f"{self.index}: {len(self.shards)} shard(s), {sum(s.videos for s in self.shards)} videos"]
        for shard in self.shards:
            if shard.unreadable:
                lines.append(f"  {shard.path.name}: {shard.unreadable}")
            lines += [f"  {shard.path.name}: video {vid!r}: {why}" for vid, why in shard.corrupt.items()]
        lines += [f"  {problem}" for problem in (self.cross_shard, self.index_problem) if problem]
        lines += [f"  unfinished shard (re-run to resume): {p.name}" for p in self.unfinished]
        lines += [f"  leftover of a killed run: {p.name}" for p in self.leftovers]
        lines.append("ok" if self.ok else "PROBLEMS FOUND: run `aqa-store repair` (keeps every intact video)")
        return lines


def check_store(index: str | Path) -> StoreHealth:
    index = Path(index)
    if not index.exists() and not shards_dir(index).is_dir():
        raise StoreError(f"no feature store at {index}")
    health = StoreHealth(index, shards=[_shard_health(p) for p in complete_shards(index)])
    readable = {s.path.name: s.path for s in health.shards if s.unreadable is None}
    try:
        catalog = scan_shards(readable)
    except StoreError as error:
        health.cross_shard = str(error)
    else:
        health.index_problem = _index_problem(index, {k: sorted(v) for k, v in catalog.entries.items()})
    folder = shards_dir(index)
    health.unfinished = sorted(folder.glob(f"*{PARTIAL_SUFFIX}")) if folder.is_dir() else []
    health.leftovers = _leftovers(index)
    return health


def _shard_health(path: Path) -> ShardHealth:
    health = ShardHealth(path)
    try:
        with open_shard(path) as handle:
            videos = handle["videos"]
            complete = [vid for vid in videos if videos[vid].attrs.get("complete", False)]
            health.videos = len(complete)
            for vid in complete:
                problems = video_problems(videos[vid])
                if problems:
                    health.corrupt[vid] = "; ".join(problems)
    except (StoreError, KeyError, OSError, RuntimeError) as error:
        health.unreadable = str(error)
    return health


def _index_problem(index: Path, expected: dict[str, list[tuple[str, str]]]) -> str | None:
    try:
        store = FeatureStore(index)
    except StoreError as error:
        return f"index: {error}"
    actual = {kind: sorted(store.entries(kind)) for kind in store.kinds}
    return None if actual == expected else "index: out of date with the shards"


def _leftovers(index: Path) -> list[Path]:
    found = list(index.parent.glob(f".{index.name}.tmp-*"))
    folder = shards_dir(index)
    if folder.is_dir():
        found += folder.glob(f"*{PARTIAL_SUFFIX}{COPY_SUFFIX}*")
    return sorted(found)


def repair_store(index: str | Path) -> list[str]:
    """Bring the store back to a complete, consistent state; returns what was done, one line per action."""
    index = Path(index)
    health = check_store(index)
    actions = []
    for leftover in health.leftovers:
        if _unlink_unless_in_use(leftover):
            actions.append(f"removed leftover {leftover.name}")
    for shard in health.shards:
        if shard.unreadable:
            aside = shard.path.with_name(shard.path.name + ".unreadable")
            shard.path.rename(aside)
            actions.append(
                f"moved unreadable shard {shard.path.name} aside to {aside.name}: its videos are gone"
            )
        elif shard.corrupt:
            _drop_videos(index, shard)
            actions.append(
                f"{shard.path.name}: dropped corrupt videos {sorted(shard.corrupt)} (extract them again)"
            )
    rebuild_index(index)
    actions.append(f"rebuilt the index {index.name}")
    return actions


def _unlink_unless_in_use(path: Path) -> bool:
    """Index temps are only written under the index lock; copy temps under their shard's lock."""
    if path.name.startswith("."):
        path.unlink(missing_ok=True)
        return True
    shard = path.with_name(path.name.split(PARTIAL_SUFFIX)[0])
    lock = ShardLock(shard)
    try:
        lock.acquire()
    except StoreError:
        return False
    try:
        path.unlink(missing_ok=True)
    finally:
        lock.release()
    return True


def _drop_videos(index: Path, shard: ShardHealth) -> None:
    name = SHARD_NAME.fullmatch(shard.path.name)
    if name is None:
        raise StoreError(f"{shard.path.name} is not a shard name this package writes; repair it by hand")
    if shard.path.with_name(shard.path.name + PARTIAL_SUFFIX).exists():
        raise StoreError(
            f"{shard.path.name} has an unfinished run (.partial): finish or delete it, then repair"
        )
    with h5py.File(shard.path, "r") as handle:
        kinds, dataset = json.loads(handle.attrs["kinds"]), str(handle.attrs.get("dataset", ""))
    writer = StoreWriter(
        index, kinds, dataset=dataset, shard_index=int(name["index"]), num_shards=int(name["count"])
    )
    with writer:  # resuming the verified copy already drops the corrupt videos; discard makes it explicit
        for vid in shard.corrupt:
            writer.discard(vid)


def store_info(index: str | Path) -> list[str]:
    """A short summary: dataset, splits, kinds with their encoder and shape, shard count."""
    store = FeatureStore(index)
    lines = [f"store    {store.path} (dataset {store.dataset or '?'})"]
    lines.append("splits   " + ", ".join(f"{k} {v}" for k, v in sorted(store.splits().items())))
    for kind in store.kinds:
        prov = store.provenance(kind)
        lines.append(
            f"kind     {kind}: {len(store.video_ids(kind=kind))} videos, dim {prov.get('dim')}, "
            f"encoder {prov.get('encoder', '?')}, preset {prov.get('preset', '?')}"
        )
    lines.append(f"shards   {len(complete_shards(store.path))} in {shards_dir(store.path)}")
    return lines
