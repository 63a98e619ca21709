"""``make demo``: the pipeline end to end on data the package generates, needing nothing from outside.

Stage one renders procedural videos whose true score is known (how fast a square crosses the frame), extracts
I3D features from them into a feature store with ``aqa-extract``'s batched extractor, and fits a head on them.
The real Kinetics I3D is used when ``$AQA_WEIGHTS_DIR`` has it; otherwise a randomly initialised I3D, announced
as such — the demo shows the plumbing, and its stage-one number says which weights produced it.

Stage two runs on a synthetic feature store whose true scores depend on temporally ordered parts of each video
(``synth.py``), so the printed table shows what each head can and cannot recover; every run directory gets its
metrics, plots and per-video explanations, and the explanation report is rendered for the best head.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

# Short schedules so the demo finishes in a few minutes on a laptop CPU (the synthetic videos are 20-36 clips).
DEMO_HEADS = {
    "ridge": {},
    "mlp": {"epochs": 60},
    "lstm": {"epochs": 30, "hidden": 64, "window": None},
    "action-net": {"epochs": 40, "window": None},
    "tpt": {"epochs": 15},
    "gdlt": {"epochs": 15, "window": None},
    "weight-score": {"epochs": 15, "q_number": 36, "window": 36, "d_model": 64, "ffn": 128},
}


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


def stage_one(out_dir: Path) -> None:

    import torch

    from aqa_pipeline.encoders.i3d import I3DEncoder
    from aqa_pipeline.encoders.weights import WeightsNotFoundError, resolve_weights
    from aqa_pipeline.extract import extract_features, jobs_from_manifest
    from aqa_pipeline.manifests import load_manifest
    from aqa_pipeline.train.run import FitConfig, run

    manifest = load_manifest(render_procedural_videos(out_dir / "videos"))
    try:  # only what is already on disk: the demo never downloads
        path = resolve_weights("i3d_kinetics400", download=False)
        encoder, weights = I3DEncoder.load(path), f"the Kinetics-400 I3D ({path})"
    except WeightsNotFoundError:
        torch.manual_seed(0)
        encoder = I3DEncoder.load(random=True)
        weights = "a RANDOMLY INITIALISED I3D (demo only: no weights found)"
    click.echo(f"stage 1 · extracting {len(manifest)} procedural videos with {weights}")
    preset = demo_preset()
    store = out_dir / "procedural" / "features.h5"
    summary = extract_features(
        jobs_from_manifest(manifest, out_dir / "videos"),
        store,
        encoder=encoder,
        preset=preset,
        dataset="procedural",
        batch_size=8,
        workers=1,
        progress=False,
    )
    click.echo(
        f"  {len(summary.done)} videos, {summary.clips} clips in {summary.seconds:.1f} s; "
        f"{len(summary.failed)} failed"
    )
    result = run(
        store, FitConfig(head="ridge", progress=False), out_dir / "runs" / "stage1-ridge", overwrite=True
    )
    click.echo(
        f"  ridge on the extracted features: test Spearman {result.metrics['test']['spearman']:.3f} "
        f"(true score = speed of the square)"
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", default="demo-output", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--heads", default=",".join(DEMO_HEADS), show_default=True, help="Comma-separated heads to run."
)
def main(out: str, heads: str) -> None:
    """Run the demo: synthetic store → aqa-fit per head → metrics table → explanation report."""
    import torch

    from aqa_pipeline.heads.registry import get_head
    from aqa_pipeline.synth import write_synthetic_store
    from aqa_pipeline.train.run import FitConfig, run

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_one(out_dir)
    store = out_dir / "synthetic" / "features.h5"
    if not store.exists():
        click.echo("stage 2 · writing a synthetic feature store (score lives in ordered parts of each video)")
        write_synthetic_store(store, kind="ordered", n_train=160, n_test=60, dim=32, length=(20, 36))
    rows = []
    for name in [h.strip() for h in heads.split(",") if h.strip()]:
        try:
            get_head(name)
        except (KeyError, ImportError) as error:
            click.echo(f"  {name}: not available ({error})")
            continue
        started = time.perf_counter()
        result = run(
            store,
            FitConfig(head=name, head_options=DEMO_HEADS.get(name, {}), progress=False),
            out_dir / "runs" / name,
            overwrite=True,  # the demo owns its output folder: a rerun replaces its runs
        )
        test = result.metrics["test"]
        rows.append((name, test["spearman"], test["rl2"], time.perf_counter() - started))
        click.echo(
            f"  {name:13s} Spearman {test['spearman']:.3f}  R-l2 {test['rl2']:.3f}  ({rows[-1][3]:.1f} s)"
        )
    if not rows:
        raise click.ClickException("no head could run")
    best = max(rows, key=lambda r: r[1])
    summary = {name: {"spearman": rho, "rl2": rl2, "seconds": round(s, 2)} for name, rho, rl2, s in rows}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    click.echo(f"best head: {best[0]} (test Spearman {best[1]:.3f}); run directories in {out_dir / 'runs'}")
    from aqa_pipeline.report.explain import write_report

    for name, *_ in sorted(rows, key=lambda r: -r[1]):
        if (out_dir / "runs" / name / "explanations").is_dir():
            index = write_report(out_dir / "runs" / name, out_dir / "runs" / name / "report")
            click.echo(f"explanation report ({name}): {index}")
            break


if __name__ == "__main__":
    main()
