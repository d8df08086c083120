"""``popdistill evaluate``: score a mask store or baselines against a data set's ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

HELP = "score soft masks (a mask store or baselines) against ground truth: P, J, CorLoc, F, MAE"
DESCRIPTION = """\
Score soft masks against a data set's ground truth, frame by frame (streaming).

The masks come from a store (--masks: a Parquet file or folder with the frame-record schema,
or a PNG export DIR/<video>/<frame>.png) and/or from baselines (--baseline centre|full).
Masks of any size are resized to the frame size. Writes OUT/report.json (per method, per
video and overall), OUT/masks.png (image | ground truth | each method) and prints a table.

Metrics: P = pixel accuracy and J = foreground IoU of the mask binarised at --threshold;
CorLoc = % of frames with boxes whose mask box has IoU >= 0.5 with a ground-truth box;
F-max / F-adapt = F-beta (beta^2 = 0.3) at the best of 256 thresholds / at 2 x mean; MAE.

Example:
  popdistill evaluate --data data/DAVIS --format davis --masks runs/gen1/masks \\
      --baseline centre --out runs/gen1/eval
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data set root folder")
    parser.add_argument("--format", required=True, help="data set format (reader name, e.g. davis)")
    parser.add_argument(
        "--masks",
        action="append",
        default=[],
        metavar="[NAME=]STORE",
        help="mask store: Parquet file/folder or PNG export folder, optionally named "
        "(e.g. videopca=runs/q/teacher/store); repeat for several",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME",
        help="a baseline to score (centre, full); repeat for several",
    )
    parser.add_argument("--out", required=True, help="output folder for report.json and masks.png")
    parser.add_argument("--threshold", type=float, default=0.5, help="binarisation threshold (0.5)")
    parser.add_argument(
        "--box-mode",
        choices=["largest", "all"],
        default="largest",
        help="CorLoc box: largest connected component or all foreground (largest)",
    )
    parser.add_argument("--limit-videos", type=int, default=None, metavar="N")
    parser.add_argument(
        "--reader-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to the data set reader (e.g. resolution=480p)",
    )
    parser.add_argument("--grid-frames", type=int, default=6, help="frames in masks.png (6)")
    parser.add_argument(
        "--progress-every", type=int, default=10, metavar="N", help="progress line every N videos"
    )


def _reader_options(items: list[str]) -> dict[str, str]:
    from popdistill.errors import UserError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--reader-option: expected KEY=VALUE, got {item!r}")
        options[key] = value
    return options


def _mask_providers(args):
    """(name -> (source, function(record) -> soft mask or None)), name -> opened store."""
    from popdistill.errors import UserError
    from popdistill.evaluate.baselines import create_baseline
    from popdistill.evaluate.masks_io import open_mask_store

    providers, stores = {}, {}
    for item in args.masks:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem or "masks", item
        if name in providers:
            raise UserError(f"--masks {item}: the name {name!r} is used twice; name stores NAME=STORE")
        store = stores[name] = open_mask_store(path)

        def from_store(rec, store=store):
            return store.get(rec.video, rec.frame, stem=Path(rec.source).stem)

        providers[name] = (f"masks:{path}", from_store)
    for base in dict.fromkeys(args.baseline):
        fn = create_baseline(base)
        if base in providers:
            raise UserError(f"--baseline {base}: clashes with the mask store's name")
        providers[base] = (f"baseline:{base}", lambda rec, fn=fn: fn(*rec.image.shape[:2]))
    if not providers:
        raise UserError("nothing to evaluate: give --masks STORE and/or --baseline centre|full")
    return providers, stores


def main(args: argparse.Namespace) -> int:
    from popdistill.data.readers import create_reader
    from popdistill.data.schema import Skipped
    from popdistill.errors import UserError
    from popdistill.evaluate.masks_io import MaskReadError
    from popdistill.evaluate.metrics import N_THRESHOLDS, EvalConfig, Evaluator
    from popdistill.evaluate.report import GridRow, format_table, save_mask_grid, write_report

    config = EvalConfig(threshold=args.threshold, box_mode=args.box_mode)
    try:
        config.validate()
    except UserError as exc:
        raise UserError(f"--{exc}") from exc
    if args.limit_videos is not None and args.limit_videos < 1:
        raise UserError(f"--limit-videos: must be at least 1, got {args.limit_videos}")
    providers, stores = _mask_providers(args)
    reader = create_reader(args.format, args.data, **_reader_options(args.reader_option))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: not a folder: {out}")

    refs = reader.videos()
    if args.limit_videos is not None:
        refs = refs[: args.limit_videos]
    evaluators = {name: Evaluator(config) for name in providers}
    reader_skipped: list[Skipped] = list(reader.skipped)
    grid: list[GridRow] = []
    n_frames, start = 0, time.perf_counter()
    for i, ref in enumerate(refs):
        grid_taken = False
        for rec in reader.read_video(ref, on_skip=reader_skipped.append):
            n_frames += 1
            has_gt = rec.gt_mask is not None or (rec.gt_boxes is not None and len(rec.gt_boxes))
            row = None
            if has_gt and not grid_taken and len(grid) < args.grid_frames:
                row = GridRow(f"{rec.video}/{rec.frame}", rec.image, rec.gt_mask)
                grid.append(row)
                grid_taken = True
            for name, (_, provide) in providers.items():
                ev = evaluators[name]
                if not has_gt:
                    ev.add(rec.video, None)
                    continue
                try:
                    soft = provide(rec)
                except MaskReadError as exc:
                    ev.skip(exc.path, exc.reason)
                    continue
                if soft is None:
                    ev.skip(
                        rec.source, f"no mask for frame (video {rec.video!r}, frame {rec.frame})"
                    )
                    continue
                ev.add(rec.video, soft, rec.gt_mask, rec.gt_boxes, frame_size=rec.image.shape[:2])
                if row is not None:
                    row.masks[name] = soft
        done = i + 1
        if args.progress_every > 0 and (done % args.progress_every == 0 or done == len(refs)):
            rate = n_frames / max(time.perf_counter() - start, 1e-9)
            print(
                f"evaluate: {done}/{len(refs)} videos, {n_frames} frames ({rate:.0f} frames/s)",
                file=sys.stderr,
                flush=True,
            )

    methods = {}
    for name, ev in evaluators.items():
        methods[name] = {
            "source": providers[name][0],
            **ev.results(),
            "skipped": [s.to_dict() for s in ev.skipped],
        }
    report = {
        "data": str(args.data),
        "format": args.format,
        "config": {**asdict(config), "n_thresholds": N_THRESHOLDS},
        "videos": len(refs),
        "frames_read": n_frames,
        "mask_stores": {
            name: {"path": str(st.path), "kind": st.kind, "masks": len(st)} for name, st in stores.items()
        },
        "methods": methods,
        "reader_skipped": [s.to_dict() for s in reader_skipped],
    }
    report_path = write_report(out / "report.json", report)
    grid_path = save_mask_grid(out / "masks.png", grid, list(providers))

    print(format_table({name: m["overall"] for name, m in methods.items()}))
    n_eval_skipped = sum(len(ev.skipped) for ev in evaluators.values())
    print(
        f"skipped inputs: {len(reader_skipped) + n_eval_skipped} "
        f"(reader {len(reader_skipped)}, evaluate {n_eval_skipped}); details in {report_path}"
    )
    for name, ev in evaluators.items():
        if ev.overall()["frames"] == 0 and ev.overall()["frames_with_boxes"] == 0:
            print(f"warning: no frame was scored for {name!r}", file=sys.stderr)
    print(f"wrote {report_path} and {grid_path}")
    return 0
