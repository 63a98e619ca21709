"""``aqa-extract``: videos → frozen I3D clip features (and optionally the athlete's tracked boxes, person-crop
features and actor-centred I3D clips) in a sharded HDF5 feature store."""

from __future__ import annotations

import sys

import click

from aqa_pipeline.video.presets import DATASET_PRESETS, NORMALISATIONS, PAD_POLICIES, PRESETS

# Literal copies (importing aqa_pipeline.actors would import torch and slow --help); a test keeps them in sync.
CROP_KINDS = {"resnet50": "resnet_crops", "mobilenet_v2": "mobilenet_crops"}
CROP_BOX_RULES = ("largest", "most_confident", "tracked")

EPILOG = """\b
Examples:
  # MTL-AQA with the CoRe clip layout, on GPU 0, 4 decoding workers
  aqa-extract --dataset mtl-aqa --video-root /data/mtl-aqa/videos --out out/mtl-aqa.h5 --gpu 0 --workers 4
  # the same, split into 4 independent jobs (run each with its own --shard-index)
  aqa-extract --dataset mtl-aqa --video-root DIR --out out/mtl-aqa.h5 --num-shards 4 --shard-index 0
  # MUSDL's last clip start (87), ImageNet-normalised input as in the papers, plus TSA's Mixed_4e maps
  aqa-extract --dataset mtl-aqa --video-root DIR --out out/m.h5 --preset mtl-aqa-musdl --normalisation paper --maps
  # your own videos (no labels; split 'unlabelled'), printing Kinetics top-5 as a sanity check
  aqa-extract --videos a.mp4 b.mp4 --out out/mine.h5 --preset action-net --cpu --show-pred
  # TSA tube boxes + FSPN actor clips + ACTION-NET MobileNetV2 crops, athlete given on the first frame
  aqa-extract --videos lift.mp4 --out out/lift.h5 --maps --boxes --actor --crops mobilenet_v2 \\
      --crop-boxes tracked --init-box 112,83,192,200

\b
Re-running the same command resumes: finished videos are skipped. Failures are listed in
<out>.failures-<shard>.jsonl and the rest continue. Ctrl-C keeps every finished video.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", help="Dataset manifest name (mtl-aqa, aqa-7, finediving, ...) or a manifest .csv.")
@click.option(
    "--video-root", type=click.Path(file_okay=False), help="Folder with the dataset's source videos."
)
@click.option(
    "--videos",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Your own video files (repeatable; also accepts several paths after one --videos).",
)
@click.option(
    "--out", "store", required=True, type=click.Path(dir_okay=False), help="Feature store (.h5) to write."
)
@click.option("--encoder", type=click.Choice(["i3d"]), default="i3d", show_default=True)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="Clip layout + transform; default: the "
    "dataset's (mtl-aqa→mtl-aqa, finediving→finediving, skating/gymnastics→gdlt), else action-net.",
)
@click.option(
    "--normalisation",
    type=click.Choice(["preset", "paper", *NORMALISATIONS]),
    default="preset",
    show_default=True,
    help="Input normalisation: the preset's ([-1,1] for frozen I3D), the paper's, or an explicit one.",
)
@click.option(
    "--pad", type=click.Choice(PAD_POLICIES), help="How short samples are filled (default repeat_last)."
)
@click.option("--gpu", type=int, help="CUDA device index.")
@click.option("--cpu", is_flag=True, help="Force CPU (the default when no --gpu is given).")
@click.option(
    "--batch-size",
    type=int,
    help="Clips per forward pass, packed across videos (default: 64 on GPU; 4 on CPU, where larger batches "
    "only cost cache and memory).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Decoding worker processes (0 = in-process; default 4 on GPU, 1 on CPU, where the I3D, not decoding, "
    "is the bottleneck).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch threads for the model on CPU (default: all cores; the decoding workers run beside them).",
)
@click.option("--num-shards", default=1, show_default=True)
@click.option("--shard-index", default=0, show_default=True)
@click.option("--limit", type=int, help="Extract at most N not-yet-done videos of this shard.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Explicit I3D checkpoint (piergiaj layout).")
@click.option("--show-pred", is_flag=True, help="Print each video's Kinetics top-5 (clip-averaged logits).")
@click.option("--maps", is_flag=True, help="Also store the mid-level I3D maps (kind i3d_maps, float16).")
@click.option(
    "--maps-endpoint",
    default="Mixed_4e",
    show_default=True,
    help="I3D endpoint for --maps (TSA-Net's default is MaxPool3d_4a_3x3).",
)
@click.option(
    "--boxes",
    "store_boxes",
    is_flag=True,
    help="Track the athlete (NanoTrack V2) and store kind 'boxes': x1,y1,x2,y2,score per frame the encoder saw.",
)
@click.option(
    "--init-box",
    help="Athlete box on each sample's first frame, 'x1,y1,x2,y2' pixels (all videos), or a JSON file "
    "{video id: [x1, y1, x2, y2]}. Without it (or for ids missing from the file) the largest person the detector "
    "finds on the first frame.",
)
@click.option(
    "--detector-weights",
    type=click.Path(dir_okay=False),
    help="YOLO person detector checkpoint (default: registry yolo11n via $AQA_WEIGHTS_DIR / cache / download).",
)
@click.option("--tracker-weights", type=click.Path(dir_okay=False), help="Explicit nanotrack_v2.pth.")
@click.option(
    "--tracker-variant",
    type=click.Choice(["repo", "opencv"]),
    default="repo",
    show_default=True,
    help="NanoTrack post-processing: the released tracker's, or cv2.TrackerNano's.",
)
@click.option(
    "--crops",
    "crop_encoder",
    type=click.Choice(sorted(CROP_KINDS)),
    help="ACTION-NET static stream: 1 fps athlete crops → this ImageNet encoder → kind resnet_crops / "
    "mobilenet_crops.",
)
@click.option("--crop-weights", type=click.Path(dir_okay=False), help="Explicit checkpoint for --crops.")
@click.option(
    "--crop-boxes",
    type=click.Choice(CROP_BOX_RULES),
    default="largest",
    show_default=True,
    help="Which box each crop takes: the largest / most confident detected person (ACTION-NET; needs the "
    "detector), or the tracked athlete box.",
)
@click.option(
    "--crop-normalisation",
    type=click.Choice(["minus1_1", "imagenet"]),
    default="minus1_1",
    show_default=True,
    help="Crop input range: [-1, 1] as ACTION-NET did, or ImageNet mean/std (what the encoder was trained on).",
)
@click.option(
    "--crop-fps", type=float, default=1.0, show_default=True, help="Crops per second of each sample."
)
@click.option(
    "--actor",
    "actor_clips",
    is_flag=True,
    help="FSPN actor stream: I3D on every clip re-cut around the tracked athlete → kind i3d_actor, aligned clip "
    "for clip with i3d.",
)
@click.option(
    "--actor-margin",
    type=float,
    default=0.1,
    show_default=True,
    help="Margin added on each side of a clip's union box, as a fraction of its longer side.",
)
@click.argument("more_videos", nargs=-1, metavar="[VIDEO ...]", type=click.Path(dir_okay=False))
def main(
    dataset,
    video_root,
    videos,
    store,
    encoder,
    preset,
    normalisation,
    pad,
    gpu,
    cpu,
    batch_size,
    workers,
    threads,
    num_shards,
    shard_index,
    limit,
    weights,
    show_pred,
    maps,
    maps_endpoint,
    store_boxes,
    init_box,
    detector_weights,
    tracker_weights,
    tracker_variant,
    crop_encoder,
    crop_weights,
    crop_boxes,
    crop_normalisation,
    crop_fps,
    actor_clips,
    actor_margin,
    more_videos,
) -> None:
    """Extract I3D clip features (Mixed_5c, 1024-d per clip) into a resumable, sharded feature store.

    Give either --dataset with --video-root (labels and splits come from the dataset manifest), or --videos.
    --boxes, --crops and --actor add the athlete-centred kinds (TSA's tube boxes, ACTION-NET's static stream,
    FSPN's actor clips) to the same store.
    """
    paths = [*videos, *more_videos]
    if bool(dataset) == bool(paths):
        raise click.UsageError("give either --dataset (with --video-root) or --videos PATH [PATH ...]")
    if dataset and not video_root:
        raise click.UsageError("--dataset needs --video-root DIR (the folder of its source videos)")
    if gpu is not None and cpu:
        raise click.UsageError("--gpu and --cpu exclude each other")

    import torch  # lazy: keeps --help instant

    from aqa_pipeline.encoders.i3d import KINETICS400, load_i3d, load_labels
    from aqa_pipeline.extract import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_WORKERS,
        extract_features,
        jobs_from_manifest,
        jobs_from_paths,
    )
    from aqa_pipeline.video.presets import get_preset

    if gpu is not None and not torch.cuda.is_available():
        raise click.UsageError(f"--gpu {gpu}: CUDA is not available on this machine (use --cpu)")
    device = f"cuda:{gpu}" if gpu is not None else "cpu"
    if dataset:
        from aqa_pipeline.manifests import load_manifest

        manifest = load_manifest(dataset)
        jobs = jobs_from_manifest(manifest, video_root)
        dataset_name = manifest.name
    else:
        jobs = jobs_from_paths(paths)
        dataset_name = "custom"
    chosen = get_preset(preset or DATASET_PRESETS.get(dataset_name, "action-net"))
    if normalisation != "preset":
        chosen = chosen.with_normalisation(normalisation)
    if pad:
        chosen = chosen.with_pad(pad)
    actors = _actor_options(
        device,
        store_boxes=store_boxes,
        actor_clips=actor_clips,
        init_box=init_box,
        detector_weights=detector_weights,
        tracker_weights=tracker_weights,
        tracker_variant=tracker_variant,
        crop_encoder=crop_encoder,
        crop_weights=crop_weights,
        crop_boxes=crop_boxes,
        crop_normalisation=crop_normalisation,
        crop_fps=crop_fps,
        actor_margin=actor_margin,
    )
    model, weights_path = load_i3d(weights, map_endpoint=maps_endpoint if maps else None)
    class_names = load_labels(weights_path) if show_pred else None
    device_type = torch.device(device).type
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    try:
        summary = extract_features(
            jobs,
            store,
            model=model,
            preset=chosen,
            dataset=dataset_name,
            weights_sha256=KINETICS400.sha256,
            batch_size=batch_size or DEFAULT_BATCH_SIZE[device_type],
            workers=DEFAULT_WORKERS[device_type] if workers is None else workers,
            device=device,
            num_shards=num_shards,
            shard_index=shard_index,
            limit=limit,
            class_names=class_names,
            actors=actors,
        )
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished videos are kept; re-run the same command to resume", err=True)
        sys.exit(130)
    click.echo(
        f"{len(summary.done)} videos extracted ({summary.clips} clips, {summary.clips_per_second:.1f} clips/s), "
        f"{summary.skipped} already done, {len(summary.failed)} failed"
    )
    if summary.padded:
        click.echo(
            f"padded ({chosen.pad}) short samples: "
            + ", ".join(f"{k}: +{v} frames" for k, v in summary.padded.items())
        )
    if summary.failed:
        click.echo(f"failures listed in {summary.failures_path}", err=True)
        sys.exit(1)


def _actor_options(device: str, *, init_box, detector_weights, tracker_weights, crop_encoder, crop_weights,
                   **settings):  # fmt: skip
    """Load the real models the actor kinds need (never random ones) and parse --init-box."""
    import json
    from pathlib import Path

    from aqa_pipeline.actors import TRACKED, ActorOptions, parse_box

    options = ActorOptions(**settings)
    if not (options.store_boxes or options.actor_clips or crop_encoder):
        if init_box or detector_weights or tracker_weights or crop_weights:
            raise click.UsageError("--init-box/--*-weights only matter with --boxes, --actor or --crops")
        return None
    if init_box:
        if Path(init_box).is_file():
            try:
                mapping = json.loads(Path(init_box).read_text())
            except json.JSONDecodeError as error:
                raise click.BadParameter(
                    f"{init_box}: not JSON ({error})", param_hint="--init-box"
                ) from error
            if not isinstance(mapping, dict):
                raise click.BadParameter(
                    f"{init_box}: expected {{video id: [x1, y1, x2, y2]}}", param_hint="--init-box"
                )
            options.init_boxes = {str(k): parse_box(v, f"{init_box}: {k}") for k, v in mapping.items()}
        else:
            try:
                options.init_boxes = parse_box(init_box, "--init-box")
            except ValueError as error:
                raise click.BadParameter(f"{error} (or a JSON file path)", param_hint="--init-box") from error
    tracking = options.store_boxes or options.actor_clips or (crop_encoder and options.crop_boxes == TRACKED)
    # A box file may leave videos out: they fail (named) unless --detector-weights is given for them.
    wants_detector = (crop_encoder and options.crop_boxes != TRACKED) or (
        tracking and options.init_boxes is None
    )
    from aqa_pipeline.encoders.weights import WeightsNotFoundError, resolve_weights, sha256_of

    try:
        if tracking:
            from aqa_pipeline.track.nanotrack import nanotrack_v2

            path = resolve_weights("nanotrack_v2", tracker_weights)
            options.tracker, options.tracker_weights_sha256 = nanotrack_v2(path), sha256_of(path)
        if wants_detector or detector_weights:
            from aqa_pipeline.detect.yolo import PersonDetector

            options.detector = PersonDetector.from_weights(
                detector_weights, device=_ultralytics_device(device)
            )
        if crop_encoder:
            from aqa_pipeline.encoders.image import ImageEncoder

            options.crop_encoder = ImageEncoder.pretrained(crop_encoder, crop_weights)
    except WeightsNotFoundError as error:
        hint = (
            " (or give --init-box / --crop-boxes tracked to run without a detector)" if wants_detector else ""
        )
        raise click.UsageError(f"{error}{hint}") from error
    try:
        options.check()
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    return options


def _ultralytics_device(device: str) -> str:
    return device.removeprefix("cuda:") if device.startswith("cuda:") else device
