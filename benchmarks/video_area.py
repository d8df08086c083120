"""Which held-out videos a generation over-segments: predicted over true foreground area per video.

For runs of ``benchmarks/population_gpu.py`` sharing one held-out world, each student's cached
held-out masks (``gen-K/<student>/heldout.npy``, >= 0.5) are compared with the objects' true area
on every held-out video: above 1 the student marks more than the object. Each cell is the mean
over the runs, so several seeds read as one table; the last rows list the videos where a
student's area grows most from generation 1 to generation 2. ``--png FILE`` draws, for the
videos named by ``--videos`` (default: the three of largest growth), one frame each: the frame,
its ground truth and each student's mask of each generation of the first run.

    .venv/bin/python benchmarks/video_area.py runs/s2_det runs/s3_det --png docs/gen2_area.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def foreground(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each mask's pixels >= 0.5 once resized (bilinear, as the evaluation does) to ``shape``."""
    from popdistill.evaluate.metrics import resize_mask

    if tuple(masks.shape[-2:]) == tuple(shape):
        return (np.asarray(masks) >= 0.5).reshape(len(masks), -1).sum(1)
    return np.array([(resize_mask(m, shape) >= 0.5).sum() for m in masks])


def area_ratios(masks: np.ndarray, gt: np.ndarray, video: np.ndarray) -> np.ndarray:
    """Per video (``video``: each frame's index): pixels of ``masks`` >= 0.5 (at the size of
    ``gt``) over the pixels of ``gt`` (boolean), both summed over the video's frames."""
    n = int(video.max()) + 1
    fg = np.bincount(video, weights=foreground(masks, gt.shape[-2:]), minlength=n)
    true = np.bincount(video, weights=gt.reshape(len(gt), -1).sum(1), minlength=n)
    return fg / np.maximum(true, 1)


def _grey(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from popdistill.evaluate.metrics import resize_mask

    return np.repeat((resize_mask(img, shape) * 255).astype(np.uint8)[..., None], 3, -1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="population_gpu.py --out folders with one held-out world")
    p.add_argument("--png", type=Path, help="also draw one frame of some videos with every mask here")
    p.add_argument("--videos", default="", help="comma-separated held-out video indices for --png "
                                                "(default: the three whose area grows most)")
    p.add_argument("--frame", type=int, default=20, help="which frame of each video --png draws (20)")
    p.add_argument("--workers", type=int, default=1, help="processes re-rendering the held-out world (1)")
    a = p.parse_args(argv)
    import population_gpu as pg

    reports = [json.loads((r / "population_gpu.json").read_text()) for r in a.runs]
    worlds = {(r["args"]["preset"], r["args"]["heldout_videos"], r["args"]["heldout_seed"]) for r in reports}
    if len(worlds) > 1:
        p.error(f"the runs have different held-out worlds: {sorted(worlds)}")
    names = [s.strip() for s in reports[0]["args"]["students"].split(",") if s.strip()]
    gens = range(1, min(r["args"]["generations"] for r in reports) + 1)
    held = pg.make_split(*worlds.pop(), a.workers)
    gt = np.concatenate([v["labels"] for v in held]) > 0
    video = np.concatenate([[i] * len(v["frames"]) for i, v in enumerate(held)])
    cols, overall = {}, {}
    for k in gens:
        for s in names:
            paths = [r / f"gen-{k}" / s / "heldout.npy" for r in a.runs]
            if missing := [str(x) for x in paths if not x.is_file()]:
                p.error(f"{missing[0]}: missing; the run has not finished generation {k}")
            loaded = [np.load(x) for x in paths]
            cols[(k, s)] = np.mean([area_ratios(m, gt, video) for m in loaded], axis=0)
            overall[(k, s)] = np.mean([area_ratios(m, gt, np.zeros_like(video))[0] for m in loaded])
    print(f"held-out area of each student's masks over the objects' true area, per video "
          f"(mean over {len(a.runs)} run(s))\n")
    print("| video | true area | " + " | ".join(f"gen {k} {s}" for k, s in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for i, v in enumerate(held):
        print(f"| {i} {v['video']} | {gt[video == i].mean():.3f} | "
              + " | ".join(f"{c[i]:.2f}" for c in cols.values()) + " |")
    print(f"| all | {gt.mean():.3f} | " + " | ".join(f"{overall[c]:.2f}" for c in cols) + " |")
    growth = None
    if len(gens) > 1:
        growth = np.max([cols[(gens[-1], s)] - cols[(1, s)] for s in names], axis=0)
        top = np.argsort(-growth)[:3]
        print(f"\nlargest growth from generation 1 to generation {gens[-1]}: "
              + "; ".join(f"video {i} (+{growth[i]:.2f})" for i in top))
    if a.png:
        from skimage.io import imsave

        chosen = ([int(x) for x in a.videos.split(",") if x.strip()] if a.videos
                  else [int(i) for i in np.argsort(-growth)[:3]] if growth is not None else [0])
        frames = np.concatenate([v["frames"] for v in held])
        masks = {c: np.load(a.runs[0] / f"gen-{c[0]}" / c[1] / "heldout.npy", mmap_mode="r") for c in cols}
        rows = []
        for i in chosen:
            f = np.flatnonzero(video == i)[min(a.frame, int((video == i).sum()) - 1)]
            hw = gt.shape[1:]
            rows.append(np.concatenate([frames[f], _grey(gt[f].astype(np.float32), hw)]
                                       + [_grey(np.asarray(masks[c][f], np.float32), hw) for c in cols], 1))
        a.png.parent.mkdir(parents=True, exist_ok=True)
        imsave(a.png, np.concatenate(rows, 0), check_contrast=False)
        print(f"\n{a.png}: videos {chosen}, frame {a.frame}; columns: frame, ground truth, "
              + ", ".join(f"gen {k} {s}" for k, s in cols) + f" ({a.runs[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
