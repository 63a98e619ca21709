"""``aqa-extract``: videos → frozen-encoder clip features (I3D, Video Swin, or 2-D frame encoders), optionally with
the athlete's tracked boxes, person-crop features and actor-centred clips, in a sharded HDF5 feature store."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from aqa_pipeline.cli.common import (
    device_option,
    echo_json,
    engine_option,
    json_option,
    ray_address_option,
    verbose_option,
    version_option,
)
from aqa_pipeline.cli.errors import AqaCommand
from aqa_pipeline.encoders.registry import ENCODERS, default_encoder
from aqa_pipeline.video.presets import DATASET_PRESETS, NORMALISATIONS, PAD_POLICIES, PRESETS

# Literal copies (importing aqa_pipeline.actors would import torch and slow --help); a test keeps them in sync.
CROP_KINDS = {"resnet50": "resnet_crops", "mobilenet_v2": "mobilenet_crops"}
CROP_BOX_RULES = ("largest", "most_confident", "tracked")

EPILOG = """\b
Encoders (--encoder): {encoders}

\b
Examples:
  # Fis-V exactly as GDLT's released features: Video Swin-B K600, 32-frame clips, 224x300 crop squashed to 224
  aqa-extract --dataset fis-v --video-root /data/fis-v/videos --out out/fisv.h5 --device cuda:0
  # MTL-AQA with the CoRe clip layout, on GPU 0, 4 decoding workers
  aqa-extract --dataset mtl-aqa --video-root /data/mtl-aqa/videos --out out/mtl-aqa.h5 --device cuda:0 --workers 4
  # the same, split into 4 independent jobs (run each with its own --shard-index)
  aqa-extract --dataset mtl-aqa --video-root DIR --out out/mtl-aqa.h5 --num-shards 4 --shard-index 0
  # the same on a Ray cluster (ray start --head ...): 8 encoder actors, one GPU each
  aqa-extract --dataset mtl-aqa --video-root DIR --out out/mtl-aqa.h5 --engine ray --ray-address auto \\
      --device cuda --ray-actors 8
  # MUSDL's last clip start (87), ImageNet-normalised input as in the papers, plus TSA's Mixed_4e maps
  aqa-extract --dataset mtl-aqa --video-root DIR --out out/m.h5 --preset mtl-aqa-musdl --normalisation paper --maps
  # your own videos (no labels; split 'unlabelled'), printing Kinetics top-5 as a sanity check
  aqa-extract --videos a.mp4 b.mp4 --out out/mine.h5 --preset action-net --device cpu --show-pred
  # TSA tube boxes + FSPN actor clips + ACTION-NET MobileNetV2 crops, athlete given on the first frame
  aqa-extract --videos lift.mp4 --out out/lift.h5 --maps --boxes --actor --crops mobilenet_v2 \\
      --crop-boxes tracked --init-box 112,83,192,200

\b
Re-running the same command resumes: finished videos are skipped. Failures are listed in
<out>.failures-<shard>.jsonl and the rest continue. Ctrl-C keeps every finished video.
""".format(
    encoders="".join(
        f"\n  {e.name:<13} kind {e.kind:<20} preset {e.default_preset:<11} {e.description}"
        for e in ENCODERS.values()
    )
    + "\n  (--dataset fis-v / rhythmic-gymnastics default to swin3d-b with GDLT's preset; mtl-aqa, aqa-7 and "
    "finediving to i3d with their papers' presets)"
)


@click.command(cls=AqaCommand, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--encoder",
    type=click.Choice(list(ENCODERS)),
    help="Frozen encoder (see the table below); default: the dataset's (fis-v/rhythmic-gymnastics: swin3d-b), "
    "else i3d.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="Clip layout + transform; default: the dataset's (mtl-aqa→mtl-aqa, finediving→finediving, "
    "skating/gymnastics→gdlt), else the encoder's (covering the whole video).",
)
@click.option(
    "--normalisation",
    type=click.Choice(["preset", "paper", *NORMALISATIONS]),
    default="preset",
    show_default=True,
    help="Input normalisation: the preset's, the paper's, or an explicit one. A preset whose normalisation the "
    "encoder was not trained on is refused unless one is given here explicitly.",
)
@click.option(
    "--pad", type=click.Choice(PAD_POLICIES), help="How short samples are filled (default repeat_last)."
)
@device_option()
@click.option("--cpu", is_flag=True, help="Alias of --device cpu.")
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
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="Explicit encoder checkpoint (I3D: piergiaj layout; Video Swin: official or torchvision layout).",
)
@click.option(
    "--show-pred", is_flag=True, help="Print each video's top-5 classes (encoders with a classifier)."
)
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
    "--track-batch",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Videos each decoding worker tracks together in lock-step (NanoTrack batched across videos); on the "
    "--device with --workers 0, on the CPU in worker processes (CUDA is unsafe in forked workers).",
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
    help="FSPN actor stream: the encoder on every clip re-cut around the tracked athlete → kind <kind>_actor "
    "(i3d_actor for I3D), aligned clip for clip with the scene kind.",
)
@click.option(
    "--actor-margin",
    type=float,
    default=0.1,
    show_default=True,
    help="Margin added on each side of a clip's union box, as a fraction of its longer side.",
)
@engine_option(
    "decoding as Ray CPU tasks streaming into a pool of encoder actors (one GPU each with --device cuda; not "
    "with --show-pred, --limit or --workers)"
)
@ray_address_option
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --engine ray: encoder actors, each loading the model once (one per GPU; on CPU each takes "
    "--threads cores, default 1).",
)
@click.argument("more_videos", nargs=-1, metavar="[VIDEO ...]", type=click.Path(dir_okay=False))
@verbose_option
@json_option
@version_option
def main(as_json: bool, **options) -> None:
    """Extract frozen-encoder clip features into a resumable, sharded feature store.

    Give either --dataset with --video-root (labels and splits come from the dataset manifest), or --videos.
    --boxes, --crops and --actor add the athlete-centred kinds (TSA's tube boxes, ACTION-NET's static stream,
    FSPN's actor clips) to the same store.
    """
    engine = EngineRequest.from_options(options)
    request = ExtractRequest.from_options(options)
    engine.check(request)
    import torch  # lazy: keeps --help instant

    from aqa_pipeline.extract import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, extract_features
    from aqa_pipeline.store.names import check_not_an_input

    jobs, dataset_name = request.jobs()
    check_not_an_input(request.store, [job.path for job in jobs])
    encoder_name = request.encoder or default_encoder(dataset_name)
    preset = request.preset(dataset_name, encoder_name, jobs)
    # on Ray, tracking and detection run in the decoding tasks, on their CPUs
    actors = _actor_options("cpu" if engine.name == "ray" else request.device, **request.actor_settings)
    encoder = _load_encoder(encoder_name, request, preset)
    device_type = torch.device(request.device).type
    if request.threads and device_type == "cpu":
        torch.set_num_threads(request.threads)
    try:
        if engine.name == "ray":
            summary = _extract_on_ray(
                engine, request, jobs, encoder, actors, preset, dataset_name, device_type
            )
        else:
            summary = extract_features(
                jobs,
                request.store,
                encoder=encoder,
                preset=preset,
                dataset=dataset_name,
                batch_size=request.batch_size or DEFAULT_BATCH_SIZE[device_type],
                workers=DEFAULT_WORKERS[device_type] if request.workers is None else request.workers,
                device=request.device,
                num_shards=request.num_shards,
                shard_index=request.shard_index,
                limit=request.limit,
                show_predictions=request.show_pred,
                actors=actors,
            )
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished videos are kept; re-run the same command to resume", err=True)
        sys.exit(130)
    _report(summary, as_json)


@dataclass(frozen=True)
class EngineRequest:
    """--engine and its Ray settings; what the Ray engine cannot do is refused before any work."""

    name: str
    ray_address: str | None
    ray_actors: int

    @classmethod
    def from_options(cls, o: dict) -> EngineRequest:
        return cls(o.pop("engine"), o.pop("ray_address"), o.pop("ray_actors"))

    def check(self, request: ExtractRequest) -> None:
        if self.name != "ray":
            if self.ray_address or self.ray_actors != 1:
                raise click.UsageError("--ray-address / --ray-actors need --engine ray")
            return
        from aqa_pipeline.ray_cluster import import_ray

        import_ray()  # installed? (before the encoder loads)
        local_only = {
            "--show-pred": request.show_pred,
            "--limit": request.limit is not None,
            "--workers": request.workers is not None,
        }
        given = [name for name, value in local_only.items() if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: the local engine's (on Ray, decoding runs as Ray tasks); drop them or use "
                "--engine local"
            )


@dataclass(frozen=True)
class ExtractRequest:
    """The command line, checked: where the videos come from, which encoder and recipe, how to run."""

    dataset: str | None
    video_root: str | None
    paths: tuple[str, ...]
    store: str
    encoder: str | None
    preset_name: str | None
    normalisation: str
    pad: str | None
    device: str
    batch_size: int | None
    workers: int | None
    threads: int | None
    num_shards: int
    shard_index: int
    limit: int | None
    weights: str | None
    show_pred: bool
    maps_endpoint: str | None
    actor_settings: dict

    @classmethod
    def from_options(cls, o: dict) -> ExtractRequest:
        paths = (*o.pop("videos"), *o.pop("more_videos"))
        if bool(o["dataset"]) == bool(paths):
            raise click.UsageError("give either --dataset (with --video-root) or --videos PATH [PATH ...]")
        if o["dataset"] and not o["video_root"]:
            raise click.UsageError("--dataset needs --video-root DIR (the folder of its source videos)")
        device = o.pop("device")
        if o.pop("cpu") and device != "cpu":
            raise click.UsageError(f"--cpu and --device {device} disagree")
        maps, endpoint = o.pop("maps"), o.pop("maps_endpoint")
        core = {k: o.pop(k) for k in ("dataset", "video_root", "store", "encoder", "normalisation", "pad",
                                      "batch_size", "workers", "threads", "num_shards", "shard_index", "limit",
                                      "weights", "show_pred")}  # fmt: skip
        return cls(**core, paths=paths, preset_name=o.pop("preset"), device=device,
                   maps_endpoint=endpoint if maps else None, actor_settings=o)  # fmt: skip

    def jobs(self):
        from aqa_pipeline.extract import jobs_from_manifest, jobs_from_paths

        if not self.dataset:
            return jobs_from_paths(self.paths), "custom"
        from aqa_pipeline.manifests import load_manifest

        manifest = load_manifest(self.dataset)
        return jobs_from_manifest(manifest, self.video_root), manifest.name

    def preset(self, dataset_name: str, encoder_name: str, jobs):
        from aqa_pipeline.video.presets import get_preset

        name = self.preset_name or DATASET_PRESETS.get(dataset_name) or ENCODERS[encoder_name].default_preset
        chosen = get_preset(name)
        if self.normalisation != "preset":
            chosen = chosen.with_normalisation(self.normalisation)
        if self.pad:
            chosen = chosen.with_pad(self.pad)
        whole = [job for job in jobs if job.start_frame is None]
        if chosen.num_frames is not None and whole:
            click.echo(
                f"note: preset {chosen.name} reads a fixed {chosen.num_frames}-frame window of each sample "
                f"({chosen.selection} frames); {len(whole)} samples are whole videos, so the rest of each is not "
                "encoded. A tiling preset (action-net, gdlt, frames) covers whole videos.",
                err=True,
            )
        return chosen


def _extract_on_ray(
    engine: EngineRequest, request: ExtractRequest, jobs, encoder, actors, preset, dataset, device_type
):
    from aqa_pipeline.extract import DEFAULT_BATCH_SIZE
    from aqa_pipeline.extract.ray_engine import RayPlan, extract_features_ray

    gpu = device_type == "cuda"
    plan = RayPlan(
        address=engine.ray_address,
        actors=engine.ray_actors,
        cpus_per_actor=1 if gpu else request.threads or 1,
        gpus_per_actor=1 if gpu else 0,
    )
    return extract_features_ray(
        jobs, request.store, encoder=encoder, preset=preset, dataset=dataset, plan=plan, actors=actors,
        batch_size=request.batch_size or DEFAULT_BATCH_SIZE[device_type], num_shards=request.num_shards,
        shard_index=request.shard_index,
    )  # fmt: skip


def _load_encoder(name: str, request: ExtractRequest, preset):
    """The encoder with real weights (never random from the command line), checked against the preset."""
    from aqa_pipeline.encoders.registry import check_normalisation, load_encoder
    from aqa_pipeline.encoders.weights import WeightsNotFoundError

    try:
        encoder = load_encoder(name, request.weights, map_endpoint=request.maps_endpoint)
        check_normalisation(encoder, preset, explicit=request.normalisation != "preset")
        if request.show_pred:
            encoder.enable_predictions()
    except WeightsNotFoundError as error:
        raise click.UsageError(str(error)) from error
    except ValueError as error:
        raise click.UsageError(f"--encoder {name}: {error}") from error
    return encoder


def _report(summary, as_json: bool) -> None:
    if as_json:
        fields = ("done", "skipped", "failed", "padded", "clips", "seconds", "failures_path")
        echo_json({name: getattr(summary, name) for name in fields})
        sys.exit(1 if summary.failed else 0)
    click.echo(
        f"{len(summary.done)} videos extracted ({summary.clips} clips, {summary.clips_per_second:.1f} clips/s), "
        f"{summary.skipped} already done, {len(summary.failed)} failed"
    )
    if summary.padded:
        click.echo(
            f"padded ({summary.preset.pad}) short samples: "
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
