"""Held-out evaluation of a generation: mask stores, baselines and Multi-Net products scored
against the evaluation data's ground truth (P, J, CorLoc, ...), plus mask-grid rows.

Masks come from Parquet stores written by the teacher / ``run_predict`` over the evaluation
videos; a Multi-Net row is the pixel-wise product of its members' masks, each first resized
to the frame, binarised at ``threshold ** n`` for n members: scored as its n-th root (the
``geomean`` ensemble of :func:`popdistill.students.multinet.multinet_mask`) at the usual
threshold, i.e. foreground where the students, on geometric average, say foreground. The raw product at 0.5 is nearly empty whenever the
students' soft masks are below ~0.87 on the object (0.87^5 = 0.5), as tiny students' are.
Frames are read once, streaming; only per-video sums are kept
(:class:`~popdistill.evaluate.metrics.Evaluator`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from popdistill.data.schema import Skipped

__all__ = ["evaluate_heldout"]


def evaluate_heldout(
    data,
    stores: Mapping[str, str],
    products: Mapping[str, Sequence[str]] | None = None,
    baselines: Sequence[str] = (),
    eval_config=None,
    grid_frames: int = 0,
    log: Callable[[str], None] = print,
    grid_stores: Mapping[str, str] | None = None,
) -> tuple[dict[str, dict], list]:
    """Score every method on ``data`` (a :class:`~popdistill.pipeline.config.DataConfig`).

    ``stores``: method name -> Parquet mask store; ``products``: Multi-Net name -> member
    store names; ``baselines``: registered baseline names (``centre``). Returns
    ``({method: Evaluator.results() + skipped}, grid rows)``: one grid row (image, ground
    truth, every method's mask) for the first frame with ground truth of the first
    ``grid_frames`` videos; ``grid_stores`` (name -> store) add columns to the grid only,
    unscored (VideoPCA's masks beside a generation's students).
    """
    from popdistill.data.readers import create_reader
    from popdistill.evaluate.baselines import create_baseline
    from popdistill.evaluate.masks_io import MaskReadError, ParquetMaskStore
    from popdistill.evaluate.metrics import Evaluator
    from popdistill.evaluate.report import GridRow
    from popdistill.students.multinet import multinet_mask

    products = dict(products or {})
    opened = {name: ParquetMaskStore(path) for name, path in stores.items()}
    shown = {name: ParquetMaskStore(path) for name, path in (grid_stores or {}).items()}
    fns = {name: create_baseline(name) for name in baselines}
    methods = [*fns, *opened, *products]
    evaluators = {name: Evaluator(eval_config) for name in methods}
    reader = create_reader(data.format, data.path, **data.reader_options)
    skipped: list[Skipped] = list(reader.skipped)
    grid: list = []
    gt_seen = False
    frames = 0
    for ref in reader.videos():
        row = None
        for rec in reader.read_video(ref, on_skip=skipped.append):
            frames += 1
            has_gt = rec.gt_mask is not None or (rec.gt_boxes is not None and len(rec.gt_boxes))
            if not has_gt:
                for ev in evaluators.values():
                    ev.add(rec.video, None)
                if row is None and len(grid) < grid_frames and not gt_seen:
                    # videos without ground truth (your own): the grid still shows their masks
                    row = GridRow(f"{rec.video}/{rec.frame}", rec.image, None)
                    row.masks = {**_grid_masks(shown, rec), **_grid_masks(opened, rec)}
                    if len(products) and all(m in row.masks for m in next(iter(products.values()))):
                        for name, members in products.items():
                            row.masks[name] = multinet_mask([row.masks[m] for m in members],
                                                            rec.image.shape[:2], "geomean")
                    grid.append(row)
                continue
            if not gt_seen:  # ground truth after all: the grid shows frames that have it
                grid = [r for r in grid if r.gt_mask is not None]
                gt_seen = True
                row = None
            h, w = rec.image.shape[:2]
            masks: dict[str, np.ndarray | None] = {n: fn(h, w) for n, fn in fns.items()}
            for name, store in opened.items():
                try:
                    masks[name] = store.get(rec.video, rec.frame)
                except MaskReadError as exc:
                    evaluators[name].skip(exc.path, exc.reason)
                    masks[name] = None
            for name, members in products.items():
                parts = [masks.get(m) for m in members]
                masks[name] = (None if any(p is None for p in parts)
                               else multinet_mask(parts, (h, w), "geomean"))
            if row is None and len(grid) < grid_frames:
                row = GridRow(f"{rec.video}/{rec.frame}", rec.image, rec.gt_mask)
                row.masks = {**_grid_masks(shown, rec),
                             **{k: v for k, v in masks.items() if v is not None}}
                grid.append(row)
            for name, soft in masks.items():
                if soft is None:
                    evaluators[name].skip(rec.source, f"no mask for {rec.video}/{rec.frame}")
                    continue
                evaluators[name].add(rec.video, soft, rec.gt_mask, rec.gt_boxes, frame_size=(h, w))
    log(f"evaluate: {len(methods)} methods on {frames} held-out frames of {data.path}")
    results = {
        name: {**ev.results(), "skipped": [s.to_dict() for s in ev.skipped][:20],
               "n_skipped": len(ev.skipped)}
        for name, ev in evaluators.items()
    }
    return results, grid


def _grid_masks(stores: Mapping[str, Any], rec) -> dict[str, np.ndarray]:
    """The grid-only columns' masks of one frame (a store without it leaves its cell out)."""
    from popdistill.evaluate.masks_io import MaskReadError

    out = {}
    for name, store in stores.items():
        try:
            out[name] = store.get(rec.video, rec.frame)
        except MaskReadError:
            continue
    return out
