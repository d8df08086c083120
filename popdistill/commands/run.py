"""``popdistill run CONFIG``: the whole multi-generation pipeline as one resumable command."""

from __future__ import annotations

import argparse

from popdistill.commands import add_set_option

HELP = "run the multi-generation pipeline (teacher -> students -> EvalSeg-Net -> ...) from one config"
DESCRIPTION = """\
Run the whole pipeline described by one YAML config: the VideoPCA teacher on the training
videos, selection, a population of students, held-out evaluation (each student and the
Multi-Net product), EvalSeg-Net; then, for every further generation, the previous students'
masks scored by EvalSeg-Net, the best kept, a fresh population trained, evaluated, ...

The config is validated before any work starts. The run directory (config `out`, or --out)
holds the stores, checkpoints, report.html (the page to look at: table, J by generation, mask
grids, pseudo-labels, config), report.json, results.md, logs/ and manifest.json (the finished
steps): re-running the same command after a crash continues where it stopped. MLflow runs go
to RUN_DIR/mlflow.db unless tracking.uri is set; open them with `popdistill ui RUN_DIR`.

examples:
  popdistill run configs/quickstart.yaml
  popdistill run configs/quickstart.yaml --out runs/try2
  popdistill run configs/quickstart.yaml --set training.epochs=8 --set students.names=[unet_tiny]
  popdistill run configs/experiments/gpu_population.yaml       (five full-size students, one GPU)
  popdistill run configs/cluster_aws.yaml --address auto     (on a cluster's head node)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML), e.g. configs/quickstart.yaml")
    p.add_argument("--out", help="run directory (overrides the config's `out`)")
    add_set_option(p, "training.epochs=8 or resources.gpus_per_worker=0.2")
    p.add_argument("--address", help="Ray cluster address (default: resources.address, "
                   "RAY_ADDRESS, else a local Ray)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own INFO lines and warnings in the terminal (by default they "
                        "go to RUN_DIR/logs/ray.log, and the run's lines also to RUN_DIR/logs/run.log)")


def main(args: argparse.Namespace) -> int:
    from popdistill.pipeline.config import load_run_config
    from popdistill.pipeline.loop import run_pipeline
    from popdistill.pipeline.report import format_results

    cfg = load_run_config(args.config, out=args.out, overrides=args.overrides)
    if args.address:
        cfg.resources.address = args.address
    report = run_pipeline(cfg, log=lambda m: print(m, flush=True), verbose=args.verbose)
    print()
    print(format_results(report["table"]))
    page = report.get("report_html") or f"{report['run_dir']}/report.json"
    print(f"\nreport: {page}   tracking UI: popdistill ui {cfg.out}")
    return 0
