"""Where the students lose to their teacher: held-out J by background clutter.

For ``popdistill run`` directories sharing one held-out data set, split the held-out frames into
quarters by their background clutter (the mean Sobel magnitude of the grey frame outside the
object, from the ground truth) and score VideoPCA and every student of every generation on each
quarter with the pipeline's metrics (P, J, CorLoc). A student that learnt only from plain
backgrounds beats its teacher on the plain quarters and loses on the cluttered ones.
``--metric area`` prints instead the masks' foreground area (>= 0.5) over the objects' true area
on each quarter: above 1, the masks over-segment there.

    .venv/bin/python benchmarks/clutter_j.py runs/cpu_population
    .venv/bin/python benchmarks/clutter_j.py --metric area runs/two_generations-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from popdistill.errors import UserError
from popdistill.pipeline.run_dir import VIDEOPCA, RunDir

METRICS = ("J", "P", "CorLoc", "area")


def clutter(image: np.ndarray, obj: np.ndarray) -> float:
    """The mean Sobel magnitude of the grey ``image`` (H x W x 3) outside ``obj`` (H x W bool)."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    outside = ~obj.astype(bool)
    return float(sobel(rgb2gray(image))[outside].mean()) if outside.any() else 0.0


def quarters(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each frame's quarter 0-3 of ``values``, plain -> cluttered; the three cuts)."""
    cuts = np.quantile(values, [0.25, 0.5, 0.75])
    return np.searchsorted(cuts, values, side="right"), cuts


def quarter_scores(frames: list, quarter: np.ndarray, metric: str, eval_config=None) -> list[float]:
    """``metric`` of one method's masks on each clutter quarter, then on all frames; ``frames``:
    (record, mask) per held-out frame; ``eval_config``: the run's EvalConfig."""
    from popdistill.evaluate.metrics import Evaluator, resize_mask

    out = []
    for q in (*range(4), None):
        chosen = [f for f, fq in zip(frames, quarter) if q is None or fq == q]
        if metric == "area":
            fg = sum(int((resize_mask(np.asarray(m, np.float32), r.gt_mask.shape) >= 0.5).sum())
                     for r, m in chosen)
            out.append(fg / max(sum(int(r.gt_mask.sum()) for r, _ in chosen), 1))
            continue
        ev = Evaluator(eval_config)
        for r, m in chosen:
            ev.add(r.video, m, r.gt_mask, r.gt_boxes, frame_size=r.gt_mask.shape)
        out.append(ev.overall()[metric])
    return out


def run_rows(run: RunDir, metric: str, with_teacher: bool) -> tuple[dict[str, list[float]], np.ndarray]:
    """{row name: per-quarter scores} of every student of every generation of ``run`` (and
    VideoPCA first with ``with_teacher``), and the clutter cuts."""
    stores = {f"{Path(run.name).name} gen {k} {s}": run.eval_store(k, s)
              for k in run.generations for s in run.students(k)}
    if with_teacher:
        stores = {VIDEOPCA: run.videopca_store(), **stores}
    frames = list(run.heldout(stores))
    quarter, cuts = quarters(np.array([clutter(r.image, r.gt_mask) for r, _ in frames]))
    rows = {name: quarter_scores([(r, m[name]) for r, m in frames], quarter, metric,
                                 run.eval_config()) for name in stores}
    return rows, cuts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="popdistill run directories with one held-out data set")
    p.add_argument("--metric", choices=METRICS, default="J",
                   help="J (default), P, CorLoc, or area: predicted over true foreground area")
    a = p.parse_args(argv)
    try:
        results = [run_rows(RunDir(r), a.metric, with_teacher=i == 0) for i, r in enumerate(a.runs)]
    except UserError as e:
        p.error(str(e))
    cuts = results[0][1]
    print(f"held-out {a.metric} by background clutter quarter (plain -> cluttered; clutter cut at "
          f"{', '.join(f'{x:.4f}' for x in cuts)})")
    print("| masks | Q1 | Q2 | Q3 | Q4 | all |\n|---|---|---|---|---|---|")
    for rows, _ in results:
        for name, scores in rows.items():
            print(f"| {name} | " + " | ".join(f"{s:.3f}" for s in scores) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
