"""Which held-out videos a generation over-segments: predicted over true foreground area per video.

For ``popdistill run`` directories sharing one held-out data set, each student's held-out masks
(``gen-K/eval/STUDENT/store``, >= 0.5 at the frame's size) are compared with the objects' true
area on every held-out video: above 1 the student marks more than the object. Each cell is the
mean over the runs, so several seeds read as one table; the last rows list the videos where a
student's area grows most from generation 1 to the last generation. ``--png FILE`` draws, for
the videos named by ``--videos`` (default: the three of largest growth), one frame each: the
frame, its ground truth and each student's mask of each generation of the first run.

    .venv/bin/python benchmarks/video_area.py runs/two_generations-s0 runs/two_generations-s1 --png docs/area.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from popdistill.errors import UserError
from popdistill.pipeline.run_dir import RunDir


def foreground(mask: np.ndarray, shape: tuple[int, int]) -> int:
    """The mask's pixels >= 0.5 once resized (bilinear, as the evaluation does) to ``shape``."""
    from popdistill.evaluate.metrics import resize_mask

    return int((resize_mask(np.asarray(mask, np.float32), shape) >= 0.5).sum())


def video_areas(run: RunDir, columns: list[tuple[int, str]]) -> tuple[list[str], np.ndarray, dict]:
    """(videos, true area per video, {column: predicted area per video}) of one run, where a
    column is (generation, student); areas are pixel sums over each video's frames."""
    stores = {f"{k}/{s}": run.eval_store(k, s) for k, s in columns}
    videos: list[str] = []
    true: list[float] = []
    pred: dict[str, list[float]] = {c: [] for c in stores}
    for rec, masks in run.heldout(stores):
        if not videos or videos[-1] != rec.video:
            videos.append(rec.video)
            true.append(0.0)
            for c in pred:
                pred[c].append(0.0)
        true[-1] += float(rec.gt_mask.sum())
        for c, m in masks.items():
            pred[c][-1] += foreground(m, rec.gt_mask.shape)
    return videos, np.asarray(true), {c: np.asarray(v) for c, v in pred.items()}


def _grey(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from popdistill.evaluate.metrics import resize_mask

    return np.repeat((resize_mask(np.asarray(img, np.float32), shape) * 255).astype(np.uint8)[..., None], 3, -1)


def draw(run: RunDir, columns: list[tuple[int, str]], videos: list[str], frame: int, png: Path) -> None:
    """One frame of each of ``videos``: the image, its ground truth, then every column's mask."""
    from skimage.io import imsave

    stores = {f"{k}/{s}": run.eval_store(k, s) for k, s in columns}
    seen: dict[str, int] = {}
    rows = {}
    for rec, masks in run.heldout(stores):
        i = seen[rec.video] = seen.get(rec.video, -1) + 1
        if rec.video in videos and (i == frame or rec.video not in rows):
            hw = rec.gt_mask.shape
            rows[rec.video] = np.concatenate(
                [rec.image, _grey(rec.gt_mask, hw)] + [_grey(masks[c], hw) for c in stores], 1)
    png.parent.mkdir(parents=True, exist_ok=True)
    imsave(png, np.concatenate([rows[v] for v in videos if v in rows], 0), check_contrast=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="popdistill run directories with one held-out data set")
    p.add_argument("--png", type=Path, help="also draw one frame of some videos with every mask here")
    p.add_argument("--videos", default="", help="comma-separated held-out video names for --png "
                                                "(default: the three whose area grows most)")
    p.add_argument("--frame", type=int, default=20, help="which frame of each video --png draws (20)")
    a = p.parse_args(argv)
    try:
        runs = [RunDir(r) for r in a.runs]
        gens = range(1, min(max(r.generations) for r in runs) + 1)
        columns = [(k, s) for k in gens for s in runs[0].students(k)]
        per_run = [video_areas(r, columns) for r in runs]
    except UserError as e:
        p.error(str(e))
    videos, true, _ = per_run[0]
    if any(v != videos for v, _, _ in per_run):
        p.error("the runs' held-out videos differ")
    keys = [f"{k}/{s}" for k, s in columns]
    cols = {c: np.mean([pred[c] / np.maximum(t, 1) for _, t, pred in per_run], axis=0) for c in keys}
    overall = {c: np.mean([pred[c].sum() / max(t.sum(), 1) for _, t, pred in per_run]) for c in keys}
    print(f"held-out area of each student's masks over the objects' true area, per video "
          f"(mean over {len(runs)} run(s))\n")
    print("| video | " + " | ".join(f"gen {c.replace('/', ' ')}" for c in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for i, v in enumerate(videos):
        print(f"| {v} | " + " | ".join(f"{cols[c][i]:.2f}" for c in keys) + " |")
    print("| all | " + " | ".join(f"{overall[c]:.2f}" for c in keys) + " |")
    growth = None
    if len(gens) > 1:
        growth = np.max([cols[f"{gens[-1]}/{s}"] - cols[f"1/{s}"] for s in runs[0].students(1)
                         if f"{gens[-1]}/{s}" in cols], axis=0)
        top = np.argsort(-growth)[:3]
        print(f"\nlargest growth from generation 1 to generation {gens[-1]}: "
              + "; ".join(f"{videos[i]} (+{growth[i]:.2f})" for i in top))
    if a.png:
        chosen = ([x.strip() for x in a.videos.split(",") if x.strip()] if a.videos
                  else [videos[i] for i in np.argsort(-growth)[:3]] if growth is not None
                  else videos[:1])
        draw(runs[0], columns, chosen, a.frame, a.png)
        print(f"\n{a.png}: {', '.join(chosen)}, frame {a.frame}; columns: frame, ground truth, "
              + ", ".join(f"gen {c.replace('/', ' ')}" for c in keys) + f" ({runs[0].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
