"""``make demo``: the pipeline end to end on data the package generates, needing nothing from outside.

Stage two runs on a synthetic feature store whose true scores depend on temporally ordered parts of each video
(``synth.py``), so the printed table shows what each head can and cannot recover; every run directory gets its
metrics, plots and per-video explanations, and the explanation report is rendered for the best head.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

DEMO_HEADS = {
    "ridge": {},
    "mlp": {"epochs": 60},
    "lstm": {"epochs": 30, "hidden": 64, "window": None},
    "gdlt": {"epochs": 60},
    "weight-score": {"epochs": 60},
    "tpt": {"epochs": 40},
    "action-net": {"epochs": 60},
}


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
    try:
        from aqa_pipeline.report.explain import write_report
    except ImportError:
        return
    for name, *_ in sorted(rows, key=lambda r: -r[1]):
        if (out_dir / "runs" / name / "explanations").is_dir():
            index = write_report(out_dir / "runs" / name, out_dir / "runs" / name / "report")
            click.echo(f"explanation report ({name}): {index}")
            break


if __name__ == "__main__":
    main()
