"""`popdistill teacher`: run the VideoPCA teacher over a data set and select its best masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from popdistill.commands import add_set_option

HELP = "run the VideoPCA teacher on Ray Data and select its most confident masks"
DESCRIPTION = """\
Run the VideoPCA teacher (unsupervised foreground discovery) over every video of a data set
on a Ray Data actor pool, write every soft mask to a Parquet pseudo-label store under
RUN_DIR/teacher/store, keep the top fraction by score (mean of the mask's non-zero values)
in RUN_DIR/teacher/selected, and write RUN_DIR/teacher/report.json (frame counts, throughput,
skipped inputs, and with ground truth the teacher's P and J over all / selected / rejected
frames). Re-running on the same RUN_DIR does not redo finished videos.

examples:
  popdistill teacher --data runs/quickstart/world --format davis --out runs/t1
  popdistill teacher --data ~/videos --format video_folder --out runs/t2 --export-png runs/t2/png
  popdistill teacher --config configs/teacher.yaml
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from popdistill.teacher.config import TeacherConfig as T
    from popdistill.teacher.config import VideoPCAConfig as V

    p.add_argument("--config", help="YAML file with the teacher config (fields of TeacherConfig); flags override it")
    add_set_option(p, "--set videopca.k=5 --set read_cpus=0.5")
    p.add_argument("--data", help="data set folder (or video folder)")
    p.add_argument("--format", help=f"data set format (see `popdistill evaluate --help`); default {T.format}")
    p.add_argument("--out", help="run directory (local path or s3://, gs:// URI)")
    p.add_argument("--select-top", type=float, help=f"fraction of frames to keep, by score (default {T.select_top})")
    p.add_argument("--select-strata", type=int, metavar="K",
                   help="keep that fraction within each of K equal-count strata of the frames' edge "
                        f"density, so cluttered backgrounds are covered too (default {T.select_strata}: "
                        "corpus-wide)")
    p.add_argument("--export-png", metavar="DIR", help="also write every soft mask as an 8-bit PNG: DIR/<video>/<frame>.png")
    p.add_argument("--actors", type=int, help=f"VideoPCA actors (default {T.actors})")
    p.add_argument("--chunk-frames", type=int, help=f"frames per unit of work (default {T.chunk_frames})")
    p.add_argument("--size", type=int, help=f"VideoPCA working size in pixels (default {V.size})")
    p.add_argument("--window", type=int, help=f"VideoPCA window length in frames (default {V.window})")
    p.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option passed to the reader, e.g. resolution=480p (repeatable)")
    p.add_argument("--no-evaluate", action="store_true", help="skip scoring against ground truth")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def build_config(args: argparse.Namespace):
    from popdistill.config import load, load_yaml, to_dict
    from popdistill.errors import UserError
    from popdistill.teacher.config import TeacherConfig

    base = to_dict(load_yaml(TeacherConfig, args.config)) if args.config else to_dict(TeacherConfig())
    flags = {"data": args.data, "format": args.format, "out": args.out, "select_top": args.select_top,
             "select_strata": args.select_strata,
             "export_png": args.export_png, "actors": args.actors, "chunk_frames": args.chunk_frames}
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.size is not None:
        base["videopca"]["size"] = args.size
    if args.window is not None:
        base["videopca"]["window"] = args.window
    for item in args.reader_option:
        if "=" not in item:
            raise UserError(f"--reader-option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        base["reader_options"][key] = value
    if args.no_evaluate:
        base["evaluate"] = False
    from popdistill.config import apply_overrides

    return load(TeacherConfig, apply_overrides(base, args.overrides))


def main(args: argparse.Namespace) -> int:
    from popdistill.ray_env import init_ray
    from popdistill.teacher.pipeline import run_teacher
    from popdistill.teacher.report import print_teacher_report

    cfg = build_config(args)
    if "://" not in cfg.data and not Path(cfg.data).exists():
        raise FileNotFoundError(f"data: no such file or folder: {cfg.data}")
    from popdistill.pipeline.lock import writer_lock

    with writer_lock(cfg.out):
        init_ray(args.address)
        report = run_teacher(cfg)
    print_teacher_report(report)
    return 0
