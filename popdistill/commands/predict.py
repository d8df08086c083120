"""`popdistill predict`: run a trained student over a data set into a Parquet mask store."""

from __future__ import annotations

import argparse

HELP = "run a trained student checkpoint over a data set on Ray Data; write its soft masks"
DESCRIPTION = """\
Run a trained student (a checkpoint written by popdistill's trainer) over every frame of a data
set on a Ray Data actor pool. Each actor loads the checkpoint once (weights only: a file that
would need arbitrary unpickling is refused) and predicts soft masks BATCH_SIZE frames at a time,
on its GPU when it has one (bf16 autocast, channels_last). Writes:

  OUT/store/<video>/chunk-NNNNN.parquet   frame records with mask (output_size square, 8-bit),
                                          score, teacher = "student:<name>", generation
  OUT/report.json                         frames, throughput, skipped inputs, the checkpoint
  DIR/<video>/<frame>.png                 with --export-png: each mask at its frame's size

The store is read by `popdistill evaluate --masks OUT/store`. Re-running on the same OUT does
not redo finished videos (and refuses a different checkpoint).

examples:
  popdistill predict --checkpoint runs/g1/unet/model.pt --data runs/quickstart/world \\
      --format davis --out runs/g1/predict-unet --export-png runs/g1/predict-unet/png
  popdistill predict --checkpoint model.pt --data ~/DAVIS --format davis --out runs/p \\
      --actors 4 --actor-gpus 0.25 --batch-size 64
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from popdistill.choices import PRECISIONS
    from popdistill.inference.config import PredictConfig as C

    p.add_argument("--checkpoint", required=True, help="student checkpoint (.pt)")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--format", help=f"data set format, a reader name (default {C.format})")
    p.add_argument("--out", required=True, help="output folder (local path or s3://, gs:// URI)")
    p.add_argument("--export-png", metavar="DIR", help="also write each mask as an 8-bit PNG: DIR/<video>/<frame>.png")
    p.add_argument("--batch-size", type=int, help=f"frames per forward pass ({C.batch_size})")
    p.add_argument("--actors", type=int, help=f"actors, one model each ({C.actors})")
    p.add_argument("--actor-cpus", type=float, help=f"CPUs reserved per actor ({C.actor_cpus})")
    p.add_argument("--actor-gpus", type=float, help=f"GPUs per actor ({C.actor_gpus:g}; e.g. 1 or 0.25)")
    p.add_argument("--threads", type=int, help=f"torch threads per actor ({C.torch_threads})")
    p.add_argument("--chunk-frames", type=int, help=f"frames per unit of work ({C.chunk_frames})")
    p.add_argument("--generation", type=int, help="generation these masks label (default: the checkpoint's + 1, else 2)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"auto: bf16 autocast (channels_last) on a GPU, fp32 on a CPU ({C.precision})")
    p.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option passed to the reader, e.g. resolution=480p (repeatable)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def build_config(args: argparse.Namespace):
    from popdistill.config import load
    from popdistill.errors import UserError
    from popdistill.inference.config import PredictConfig

    options = {}
    for item in args.reader_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--reader-option {item!r}: expected KEY=VALUE")
        options[key] = value
    values = {
        "checkpoint": args.checkpoint, "data": args.data, "format": args.format, "out": args.out,
        "export_png": args.export_png, "batch_size": args.batch_size,
        "chunk_frames": args.chunk_frames, "actors": args.actors, "actor_cpus": args.actor_cpus,
        "actor_gpus": args.actor_gpus, "torch_threads": args.threads,
        "precision": args.precision, "generation": args.generation,
    }
    return load(PredictConfig, {"reader_options": options,
                                **{k: v for k, v in values.items() if v is not None}})


def main(args: argparse.Namespace) -> int:
    from popdistill.inference.predict import checkpoint_info, run_predict
    from popdistill.ray_env import init_ray

    cfg = build_config(args)
    info = checkpoint_info(cfg.checkpoint)  # a bad checkpoint fails here, before Ray starts
    init_ray(args.address)
    report = run_predict(cfg, info=info)
    skipped = report["skipped"]
    print(f"predict: {report['teacher']} (generation {report['generation']}): {report['frames']} frames "
          f"in {report['seconds']:.1f} s ({report['frames_per_second']:.1f} frames/s); "
          f"{report['videos']['done']}/{report['videos']['total']} videos done")
    print(f"store: {report['store']}" + (f"; PNGs: {report['export_png']}" if report["export_png"] else "")
          + f"; report: {cfg.out}/report.json")
    print(f"skipped inputs: {len(skipped)}" + (" (listed in report.json)" if skipped else ""))
    for s in skipped[:10]:
        print(f"  {s['path']}: {s['reason']}")
    return 0
