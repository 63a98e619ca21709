"""Head-specific attention plots: TPT's queries × clips map (like the paper's Fig. 4) and ACTION-NET's per-stream
attention timeline. Both read the arrays a run saves in ``explanations/<id>.npz`` (``attention`` and
``attention_centre`` for TPT; ``attention`` and ``static_attention`` for ACTION-NET)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aqa_pipeline.report.run_plots import _pyplot


def _time_axis(count: int, seconds_per_clip: float | None) -> tuple[np.ndarray, str]:
    if seconds_per_clip:
        return np.arange(count) * seconds_per_clip, "time (s)"
    return np.arange(count), "clip"


def plot_query_attention(
    attention: np.ndarray,
    path: str | Path,
    centres: np.ndarray | None = None,
    seconds_per_clip: float | None = None,
    title: str = "",
) -> Path:
    """Heat map of a (K, T) cross-attention map, one row per query, with each query's centre μ_k marked
    (centres are 1-based clip positions, as the ranking loss defines them)."""
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 2:
        raise ValueError(f"query attention must be (K, T), got shape {attention.shape}")
    plt = _pyplot()
    k, t = attention.shape
    times, label = _time_axis(t + 1, seconds_per_clip)
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, t / 8)), 1.0 + 0.45 * k))
    image = ax.pcolormesh(times, np.arange(k + 1), attention, cmap="viridis", shading="flat")
    if centres is not None:
        step = seconds_per_clip or 1.0
        ax.scatter(
            (np.asarray(centres) - 0.5) * step,
            np.arange(k) + 0.5,
            marker="|",
            s=200,
            c="white",
            label="centre μ_k",
        )
        ax.legend(loc="upper right", fontsize="small")
    ax.set_yticks(np.arange(k) + 0.5, [f"query {i + 1}" for i in range(k)])
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_title(title or "TPT cross-attention (softmax over time)")
    fig.colorbar(image, ax=ax, pad=0.01, label="attention")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_attention_timeline(
    streams: dict[str, np.ndarray],
    path: str | Path,
    seconds_per_clip: dict[str, float | None] | None = None,
    title: str = "",
) -> Path:
    """One panel per stream (e.g. ACTION-NET's dynamic clips and static frames) of its per-instance attention."""
    if not streams:
        raise ValueError("no attention streams to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(len(streams), 1, figsize=(9, 2.2 * len(streams)), squeeze=False)
    for ax, (name, weights) in zip(axes[:, 0], streams.items(), strict=True):
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        times, label = _time_axis(len(weights), (seconds_per_clip or {}).get(name))
        ax.fill_between(times, weights, step="mid", alpha=0.4)
        ax.plot(times, weights, drawstyle="steps-mid", lw=1)
        ax.axhline(1.0 / max(len(weights), 1), color="grey", ls="--", lw=0.8, label="uniform")
        ax.set_ylabel(f"{name}\nattention")
        ax.set_xlabel(label)
        ax.legend(loc="upper right", fontsize="small")
    axes[0, 0].set_title(title or "ACTION-NET per-instance attention")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
