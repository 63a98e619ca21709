"""Where a CV's fits run: one process (1 and all threads), ``--jobs N`` worker processes, and Ray tasks.

Times the same K-fold × seeds CV of one head on the Fis-V store (``--store``, or imported from
``$AQA_DATA_DIR/fisv``; synthetic Fis-V-shaped videos otherwise) on each engine and checks that every engine gives
the same CV Spearman. Wall-clock seconds, so run it on idle cores.

    python benchmarks/bench_fit_engines.py --head mlp --cv 5 --seeds 2 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from fisv_store import import_fisv_store


def _store(path: str | None, scratch: Path) -> tuple[Path, str]:
    """The store and target to time: ``--store``, else Fis-V (TES), else synthetic Fis-V-shaped videos."""
    from aqa_pipeline.synth import write_synthetic_store

    if path:
        return Path(path), "tes"
    fisv = import_fisv_store(scratch)
    if fisv is not None:
        return fisv, "tes"
    print("bench_fit_engines: no Fis-V features ($AQA_DATA_DIR); synthetic Fis-V-shaped videos instead")
    synthetic = write_synthetic_store(
        scratch / "synth.h5", n_train=400, n_test=0, dim=1024, length=(124, 302)
    )
    return synthetic, "score"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default=None)
    parser.add_argument("--head", default="mlp")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    import torch

    from aqa_pipeline.train.engines import EngineChoice
    from aqa_pipeline.train.run import FitConfig, run

    with tempfile.TemporaryDirectory() as scratch:
        store, target = _store(args.store, Path(scratch))
        config = FitConfig(
            head=args.head, target=target, cv=args.cv, seeds=list(range(args.seeds)), progress=False,
            final_model=False,
        )  # fmt: skip
        engines = [
            ("in-process, 1 thread", EngineChoice(), 1),
            (f"in-process, {os.cpu_count()} threads", EngineChoice(), os.cpu_count() or 1),
            (f"--jobs {args.jobs}, 1 thread each", EngineChoice(jobs=args.jobs, threads=1), 1),
        ]
        if not args.no_ray:
            engines.append(
                (f"--engine ray, {args.jobs} CPUs", EngineChoice("ray", jobs=args.jobs, threads=1), 1)
            )
        print(
            f"{args.head}: {args.cv}-fold CV × {args.seeds} seeds = {args.cv * args.seeds} fits on {store.name}"
        )
        baseline = None
        for label, engine, threads in engines:
            torch.set_num_threads(threads)
            if engine.name == "ray":
                import ray

                ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
            started = time.perf_counter()
            result = run(store, config, engine=engine)
            seconds = time.perf_counter() - started
            rho = result.metrics["cv"]["spearman"]
            baseline = baseline or seconds
            print(f"  {label:28s} {seconds:7.1f} s  ×{baseline / seconds:4.2f}  CV Spearman {rho:.4f}")
            if engine.name == "ray":
                ray.shutdown()


if __name__ == "__main__":
    main()
