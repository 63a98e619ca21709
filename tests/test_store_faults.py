"""Fault injection: a writer appending to a store is killed (SIGKILL) at random moments, many times over.

After every kill the published store must be exactly an earlier complete state or the new one (never fewer
videos, never a video with other bytes), and the next run must resume. The kill moments span the whole run, so
they land in the working copy of the shard, in video writes, in the checks before publishing, in the rename and
in the index rewrite.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import numpy as np

from aqa_pipeline.store import Feature, FeatureStore, StoreError, StoreWriter
from aqa_pipeline.store.doctor import check_store
from aqa_pipeline.store.schema import shards_dir

PROV = {"encoder": "test-encoder", "preset": "test", "dim": 256}
KILLS_WANTED = 200
SECONDS_BUDGET = 20.0


def _video(i: int) -> tuple[str, Feature]:
    rng = np.random.default_rng(i)
    return f"v{i:03d}", Feature(rng.standard_normal((64, 256)).astype(np.float32), np.arange(64))


def _append_until(store: str, last: int) -> None:
    """The child: bring the store to videos 0..last (skipping those already done), then exit."""
    with StoreWriter(store, {"i3d": PROV}, dataset="toy") as writer:
        for i in range(last + 1):
            vid, feature = _video(i)
            if not writer.is_done(vid):
                writer.write(vid, {"i3d": feature}, {"split": "train", "score": float(i)})
    os._exit(0)


def _published(store: Path) -> int:
    """How many videos the published store holds, after checking every one's bytes; -1 when none yet."""
    try:
        reader = FeatureStore(store)
    except StoreError:
        assert not store.exists(), "an index that exists must always be readable"
        return -1
    data = reader.load("i3d")
    for vid, array in zip(data.ids, data.features["i3d"], strict=True):
        assert np.array_equal(array, _video(int(vid[1:]))[1].data), f"{vid} changed"
    count = len(data.ids)
    assert data.ids == [_video(i)[0] for i in range(count)], "published videos are always a prefix"
    return count


def _run(context, store: Path, last: int, kill_after: float | None) -> bool:
    child = context.Process(target=_append_until, args=(str(store), last))
    child.start()
    killed = False
    if kill_after is not None:
        child.join(kill_after)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            killed = True
    child.join()
    assert killed or child.exitcode == 0, f"a writer run failed (exit {child.exitcode})"
    return killed


def test_random_kills_never_lose_a_complete_state(tmp_path):
    store = tmp_path / "features.h5"
    context = multiprocessing.get_context("fork")
    rng = random.Random(15)
    _run(context, store, 4, None)  # a finished store to append to
    started = time.perf_counter()
    _run(context, store, 5, None)
    run_seconds = time.perf_counter() - started
    count, kills, states, target = _published(store), 0, 0, 6
    assert count == 6
    while kills < KILLS_WANTED and time.perf_counter() - started < SECONDS_BUDGET:
        kills += _run(context, store, target, rng.uniform(0.0, 1.3 * run_seconds))
        now = _published(store)
        states += 1
        assert now in (count, target + 1), (
            f"store went from {count} to {now} videos (writing up to {target + 1})"
        )
        count = now
        target = count if count == target + 1 else target
    _run(context, store, target, None)  # an uninterrupted run always finishes the job
    assert _published(store) == target + 1
    health = check_store(store)
    assert health.ok and not health.leftovers and not list(shards_dir(store).glob("*.partial*"))
    print(f"fault injection: {kills} kills, {states} states checked, {target + 1} videos, none lost")
    assert kills >= 20, f"only {kills} kills landed inside a run in the time budget"
