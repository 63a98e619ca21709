"""Deterministic synthetic AQA datasets whose true scores are known: for the demo and for tests.

Each generator plants the score in clip features in a way a particular kind of head must exploit:

- ``pooled``:  score is a linear function of the mean clip feature — every working head recovers it.
- ``ordered``: a video is K consecutive parts of random length; each part carries a quality q_k along the same
  direction, and the score weights the parts differently (c = +1, -1, +2, ...). Time-pooling mixes the parts, so a
  pooled baseline cannot fully recover it; a head that parses time can.
- ``sparse``:  only a few clips (marked along a "salience" direction) carry the score; the rest carry loud
  distractors along the score direction. Pooling dilutes the signal; clip weighting recovers it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aqa_pipeline.train.data import SequenceData

KINDS = ("pooled", "ordered", "sparse")


def _directions(rng: np.random.Generator, dim: int, count: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((dim, count)))
    return q.T.astype(np.float32)  # orthonormal rows


def synthetic_videos(
    kind: str = "pooled",
    n: int = 200,
    dim: int = 64,
    length: tuple[int, int] = (24, 40),
    parts: int = 3,
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` videos of (T_i, dim) float32 clip features and their true scores (roughly in [0, 1])."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng(seed)
    score_dir, salience_dir = _directions(rng, dim, 2)
    videos, scores = [], []
    weights = np.array([(1.0 if k % 2 == 0 else -1.0) * (1 + k // 2) for k in range(parts)], dtype=np.float32)
    for _ in range(n):
        t = int(rng.integers(length[0], length[1] + 1))
        x = rng.standard_normal((t, dim)).astype(np.float32) * 0.5
        x -= np.outer(x @ score_dir, score_dir)  # background carries no score
        if kind == "pooled":
            q = rng.uniform(-1, 1)
            x += np.outer(np.full(t, q), score_dir)
            score = q
        elif kind == "ordered":
            cuts = np.sort(rng.choice(np.arange(2, t - 1), size=parts - 1, replace=False))
            bounds = np.concatenate([[0], cuts, [t]])
            q = rng.uniform(-1, 1, size=parts).astype(np.float32)
            for k in range(parts):
                x[bounds[k] : bounds[k + 1]] += q[k] * score_dir
            score = float(weights @ q) / float(np.abs(weights).sum())
        else:  # sparse
            salient = rng.choice(t, size=max(2, t // 8), replace=False)
            q = rng.uniform(-1, 1)
            distractors = rng.uniform(-1, 1, size=t).astype(np.float32) * 2.0
            distractors[salient] = q
            x += np.outer(distractors, score_dir)
            x[salient] += 2.0 * salience_dir
            score = q
        videos.append(x)
        scores.append(score)
    scores = np.asarray(scores, dtype=np.float64)
    scores = (scores - scores.min()) / max(np.ptp(scores), 1e-9)
    scores = scores + rng.normal(0, noise, size=n)
    return videos, scores


def synthetic_sequence_data(kind: str = "pooled", n: int = 200, seed: int = 0, **options) -> SequenceData:
    """The same videos as a SequenceData ready for a head (targets already in [0, 1] working units)."""
    videos, scores = synthetic_videos(kind, n=n, seed=seed, **options)
    return SequenceData(ids=[f"{kind}_{i:04d}" for i in range(n)], x=videos, y=scores.astype(np.float32))


def write_synthetic_store(
    path: str | Path, kind: str = "ordered", n_train: int = 160, n_test: int = 60, seed: int = 0, **options
) -> Path:
    """A complete feature store (kind ``synth``) with train/test splits and labels ``score`` (0-100)."""
    from aqa_pipeline.store import Feature, StoreWriter

    path = Path(path)
    videos, scores = synthetic_videos(kind, n=n_train + n_test, seed=seed, **options)
    dim = int(videos[0].shape[1])
    provenance = {
        "encoder": f"synthetic:{kind}",
        "preset": "synthetic",
        "dim": dim,
        "weights_sha256": "none",
        "transform": "none",
        "generator": {"kind": kind, "seed": seed, **{k: str(v) for k, v in options.items()}},
    }
    with StoreWriter(path, {"synth": provenance}, dataset=f"synthetic-{kind}") as writer:
        for i, (x, score) in enumerate(zip(videos, scores, strict=True)):
            split = "train" if i < n_train else "test"
            writer.write(
                f"{kind}_{i:04d}",
                {"synth": Feature(x, np.arange(len(x)) * 16)},
                {"score": float(score * 100.0), "split": split},
            )
    return path
