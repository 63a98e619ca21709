"""``make demo``: the pipeline end to end on data the package generates, needing nothing from outside.

1. Stage one renders procedural videos whose true score is known (how fast a square crosses the frame), extracts
   I3D features with ``aqa-extract``'s batched extractor and fits ridge and the weight-score decoder on them. The
   real Kinetics I3D is used when ``$AQA_WEIGHTS_DIR`` has it; otherwise a randomly initialised I3D, announced.
2. Stage two shows each head on synthetic features of the kind it is built to learn (``synth.py``), beside a ridge
   on the time-mean of the same data: pooled signal for the pooled baselines, temporally ordered parts for the
   sequence heads, a few salient clips among loud distractors for the attention heads.
3. ``aqa-score`` takes a fresh procedural video to an explained score and prints the path of its page.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import click


@dataclass(frozen=True)
class DemoHead:
    """A head, the synthetic kind it is built to learn and a schedule short enough for a laptop CPU."""

    name: str
    kind: str
    options: dict = field(default_factory=dict)


# Options as in each head's learning test (tests/test_<head>.py): small widths, short schedules.
DEMO_HEADS = (
    DemoHead("ridge", "pooled"),
    DemoHead("mlp", "pooled", {"epochs": 20}),
    DemoHead("lstm", "ordered", {"epochs": 30, "hidden": 64, "window": None}),
    DemoHead(
        "tpt", "ordered",
        {"d_model": 32, "d_ffn": 32, "queries": 3, "self_attention_heads": 2, "batch_size": 8,
         "positional": "sinusoidal", "part_identity": True, "epochs": 20, "lr": 1e-3, "eval_every": 2},
    ),
    DemoHead(
        "action-net", "sparse",
        {"embed_dim": 16, "attention_hidden": 16, "fusion_hidden": 16, "window": None, "epochs": 40, "eval_every": 2},
    ),
    DemoHead(
        "gdlt", "sparse",
        {"hidden": 64, "d_model": 32, "ffn": 64, "dropout": 0.1, "window": None, "batch_size": 16, "epochs": 30,
         "optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0},
    ),
    DemoHead(
        "weight-score", "sparse",
        {"q_number": 16, "window": None, "d_model": 32, "ffn": 64, "dropout": 0.1, "query_std": 0.5,
         "batch_size": 16, "epochs": 20, "lr": 2e-3},
    ),
)  # fmt: skip
SYNTHETIC = {"pooled": {"dim": 32}, "ordered": {"dim": 16}, "sparse": {"dim": 32}}
SYNTHETIC_VIDEOS = {"n_train": 160, "n_test": 80, "length": (16, 28)}
# the procedural videos are 3 clips long: a narrow decoder with a few queries
STAGE_ONE_WEIGHT_SCORE = {
    "epochs": 40, "d_model": 32, "q_number": 4, "window": None, "batch_size": 8, "dropout": 0.1,
    "query_std": 0.5, "ffn": 64,
}  # fmt: skip


def render_procedural_videos(
    folder: Path, count: int = 40, frames: int = 48, size: int = 128, seed: int = 0
) -> Path:
    """``count`` videos of a bright square crossing a noisy frame at a known speed; returns a manifest CSV."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id,video,start_frame,end_frame,split,score,difficulty,action_class"]
    for i in range(count):
        speed = float(rng.uniform(0.5, 4.0))  # pixels per frame: the "quality" to recover
        writer = cv2.VideoWriter(
            str(folder / f"clip{i:02d}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size)
        )
        for t in range(frames):
            frame = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            x = int(8 + speed * t) % (size - 24)
            frame[52:76, x : x + 24] = (230, 200, 40)
            writer.write(frame)
        writer.release()
        split = "train" if i < count * 3 // 4 else "test"
        rows.append(f"clip{i:02d},clip{i:02d},,,{split},{speed * 25:.3f},,")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def demo_preset():
    """112-pixel tiles of 16 frames at native fps: keeps the demo to a minute on a laptop CPU."""
    import dataclasses

    from aqa_pipeline.video.presets import get_preset

    return dataclasses.replace(
        get_preset("action-net"),
        name="demo-112",
        target_fps=None,
        resize_mode="fixed",
        resize_to=(112, 112),
        crop_hw=(112, 112),
        output_hw=(112, 112),
    )


def demo_i3d(out_dir: Path):
    """The Kinetics I3D when it is on disk (the demo never downloads), else a randomly initialised one, announced;
    stage three scores with this same encoder object. Returns (encoder, what it is)."""
    import torch

    from aqa_pipeline.encoders.i3d import I3DEncoder
    from aqa_pipeline.encoders.weights import WeightsNotFoundError, resolve_weights

    try:
        path = resolve_weights("i3d_kinetics400", download=False)
        return I3DEncoder.load(path), f"the Kinetics-400 I3D ({path})"
    except WeightsNotFoundError:
        torch.manual_seed(0)
        return I3DEncoder.load(random=True), "a RANDOMLY INITIALISED I3D (demo only: no weights found)"


def stage_one(out_dir: Path, encoder, what: str) -> Path:
    """Procedural videos → I3D store → ridge and weight-score; returns the weight-score run."""
    import torch

    from aqa_pipeline.extract import extract_features, jobs_from_manifest
    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.train.run import FitConfig, run

    manifest = load_manifest(render_procedural_videos(out_dir / "videos"))
    click.echo(f"stage 1 · extracting {len(manifest)} procedural videos with {what}")
    # a rerun resumes its store; features of the random I3D are kept apart from the real one's
    store = (
        out_dir / "procedural" / ("features-random-i3d.h5" if encoder.weights.is_random else "features.h5")
    )
    summary = extract_features(
        jobs_from_manifest(manifest, out_dir / "videos"), store, encoder=encoder, preset=demo_preset(),
        dataset="procedural", batch_size=8, workers=1, progress=False,
    )  # fmt: skip
    click.echo(
        f"  {len(summary.done)} videos, {summary.clips} clips in {summary.seconds:.1f} s; "
        f"{len(summary.failed)} failed"
    )
    torch.set_num_threads(1)  # the heads are tiny: a second thread costs more in synchronisation than it buys
    for name, options in (("ridge", {}), ("weight-score", STAGE_ONE_WEIGHT_SCORE)):
        config = FitConfig(head=name, head_options=options, progress=False)
        result = run(store, config, out_dir / "runs" / f"stage1-{name}", overwrite=True)
        click.echo(
            f"  {name} on the extracted features: test Spearman {result.metrics['test']['spearman']:.3f} "
            "(true score = speed of the square)"
        )
    return out_dir / "runs" / "stage1-weight-score"


def stage_two(out_dir: Path, heads: list[DemoHead]) -> dict[str, dict]:
    """Each head on the synthetic kind it is built for, beside ridge on the same data; returns the table."""
    from aqa_pipeline.synth import write_synthetic_store
    from aqa_pipeline.train.run import FitConfig, run

    click.echo("stage 2 · each head on synthetic features of the kind it is built to learn")
    table = {}
    baselines: dict[str, float] = {}
    for head in heads:
        store = out_dir / "synthetic" / f"{head.kind}.h5"
        if not store.exists():
            write_synthetic_store(store, kind=head.kind, **SYNTHETIC_VIDEOS, **SYNTHETIC[head.kind])
        if head.kind not in baselines:
            ridge = run(store, FitConfig(head="ridge", progress=False, final_model=False))
            baselines[head.kind] = ridge.metrics["test"]["spearman"]
        started = time.perf_counter()
        config = FitConfig(head=head.name, head_options=head.options, progress=False, final_model=False)
        result = run(store, config, out_dir / "runs" / head.name, overwrite=True)
        seconds = time.perf_counter() - started
        rho = result.metrics["test"]["spearman"]
        table[head.name] = {"kind": head.kind, "spearman": rho, "ridge_same_data": baselines[head.kind],
                            "seconds": round(seconds, 1)}  # fmt: skip
        click.echo(
            f"  {head.name:13s} on {head.kind:8s} Spearman {rho:.3f}  "
            f"(ridge on the time-mean: {baselines[head.kind]:.3f})  {seconds:.1f} s"
        )
    return table


def score_fresh_videos(out_dir: Path, run_dir: Path, encoder, count: int = 3) -> None:
    """aqa-score on procedural videos no run has seen; prints their scores against the truth and their pages."""
    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.scoring import score

    manifest = load_manifest(render_procedural_videos(out_dir / "fresh", count=count, seed=2026))
    paths = [out_dir / "fresh" / f"{row.video}.avi" for row in manifest.rows]
    click.echo(f"stage 3 · aqa-score {' '.join(p.name for p in paths)} --model {run_dir}")
    for row, scored in zip(
        manifest.rows, score(paths, run_dir, out_dir / "scored", encoder=encoder, progress=False), strict=True
    ):
        click.echo(f"  {row.id}: {scored.score:5.1f} (true {row.score:5.1f})  what drove it: {scored.page}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", default="demo-output", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--heads",
    default=",".join(h.name for h in DEMO_HEADS),
    show_default=True,
    help="Comma-separated heads for stage two.",
)
def main(out: str, heads: str) -> None:
    """Run the demo: procedural videos → I3D → heads → aqa-score with a report page; synthetic features show
    each head on the kind of data it is built to learn."""
    started = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {h.strip() for h in heads.split(",") if h.strip()}
    unknown = wanted - {h.name for h in DEMO_HEADS}
    if unknown:
        raise click.BadParameter(f"no demo for {sorted(unknown)}; choose from {[h.name for h in DEMO_HEADS]}")
    encoder, what = demo_i3d(out_dir)
    weight_score_run = stage_one(out_dir, encoder, what)
    table = stage_two(out_dir, [h for h in DEMO_HEADS if h.name in wanted])
    (out_dir / "summary.json").write_text(json.dumps(table, indent=2))
    score_fresh_videos(out_dir, weight_score_run, encoder)
    click.echo(f"done in {time.perf_counter() - started:.0f} s; run directories in {out_dir / 'runs'}")


if __name__ == "__main__":
    main()
