"""Where the students lose to their teacher: held-out J by background clutter (thirteenth session).

For runs of ``benchmarks/population_gpu.py``, split the held-out frames into quarters by their
background clutter (the mean Sobel magnitude of the grey frame outside the object, from the
world's ground truth: ``selection_coverage.clutter``) and score VideoPCA and every student of
every generation on each quarter with the benchmark's own ``evaluate`` (P, J, CorLoc). A
student that learnt only from plain backgrounds beats its teacher on the plain quarters and
loses on the cluttered ones. ``--metric area`` prints instead the masks' foreground area
(>= 0.5) over the objects' true area on each quarter: above 1, the masks over-segment there.

    .venv/bin/python benchmarks/clutter_j.py runs/s0_cos runs/s0_strat
    .venv/bin/python benchmarks/clutter_j.py --metric area runs/s2_det
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import population_gpu as pg  # noqa: E402
import selection_coverage as sc  # noqa: E402
from video_area import foreground  # noqa: E402

METRICS = ("J", "P", "CorLoc", "area")


def quarter_rows(videos: list[str], gt_labels: np.ndarray, quarter: np.ndarray, masks,
                 metric: str = "J") -> list[float]:
    """``metric`` of ``masks`` on each clutter quarter, then on all frames; ``area``: the
    masks' pixels >= 0.5 (resized to the frames' size) over the objects' pixels."""
    out = []
    for q in (*range(4), None):
        idx = np.arange(len(quarter)) if q is None else np.flatnonzero(quarter == q)
        if metric == "area":
            fg = foreground(np.stack([np.asarray(masks[i], np.float32) for i in idx]), gt_labels.shape[1:])
            out.append(float(fg.sum()) / max(int((gt_labels[idx] > 0).sum()), 1))
            continue
        out.append(pg.evaluate([videos[i] for i in idx], [masks[i] for i in idx], gt_labels[idx])[metric])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="population_gpu.py --out folders with the same held-out world")
    p.add_argument("--workers", type=int, default=1, help="processes re-rendering the held-out world (1)")
    p.add_argument("--metric", choices=METRICS, default="J",
                   help="J (default), P, CorLoc, or area: predicted over true foreground area")
    a = p.parse_args(argv)
    runs = [Path(r) for r in a.runs]
    reports = {r: json.loads((r / "population_gpu.json").read_text()) for r in runs}
    unfinished = [str(r) for r, rep in reports.items() if "args" not in rep]
    if unfinished:
        p.error(f"{unfinished[0]}: the run has not finished (population_gpu.json has no args yet)")
    args = [reports[r]["args"] for r in runs]
    world = {(x["preset"], x["heldout_videos"], x["heldout_seed"]) for x in args}
    if len(world) > 1:
        p.error(f"the runs were scored on different held-out worlds: {sorted(world)}")
    preset, n_videos, seed = world.pop()
    held = pg.make_split(preset, n_videos, seed, a.workers)
    videos = [v["video"] for v in held for _ in range(len(v["frames"]))]
    labels = np.concatenate([v["labels"] for v in held])
    c = sc.clutter(pg._chw(np.concatenate([v["frames"] for v in held])), labels > 0)
    quarter, cuts = sc.quarters(c)
    print(f"held-out {a.metric} by background clutter quarter (plain -> cluttered; {len(c)} frames, "
          f"clutter cut at {', '.join(f'{x:.4f}' for x in cuts)})")
    print("| masks | Q1 | Q2 | Q3 | Q4 | all |\n|---|---|---|---|---|---|")
    teacher = quarter_rows(videos, labels, quarter, np.concatenate([v["masks"] for v in held]), a.metric)
    print("| VideoPCA (the teacher) | " + " | ".join(f"{j:.3f}" for j in teacher) + " |")
    for run, x in zip(runs, args):
        names = [s.strip() for s in x["students"].split(",") if s.strip()]
        for gen in range(1, x["generations"] + 1):
            for name in names:
                f = run / f"gen-{gen}" / name / "heldout.npy"
                if not f.exists():
                    continue
                js = quarter_rows(videos, labels, quarter, np.load(f).astype(np.float32), a.metric)
                print(f"| {run.name} gen {gen} {name} | " + " | ".join(f"{j:.3f}" for j in js) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
