"""Which backgrounds each selection covers: the ninth session's diagnosis (docs/results.md).

For a run of ``benchmarks/population_gpu.py`` with ``--generations 2`` or more, measure each
training frame's background clutter (the mean Sobel magnitude of its grey image outside the
object, from the world's ground truth) and report, for all training frames, the held-out
frames, generation 1's selection (VideoPCA score), generation 2's selection by agreement and
their union (``--keep-teacher``), the share of frames in the most cluttered quarter of the
training frames. The students' agreement favours plain backgrounds; a generation trained
without cluttered frames takes clutter for objects.

    .venv/bin/python benchmarks/selection_coverage.py runs/s1_keept
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import population_gpu as pg  # noqa: E402


def clutter(images: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Per frame: the mean Sobel magnitude of the grey image outside ``objects``
    (``images``: N x 3 x H x W uint8, memory-mapped is fine; ``objects``: N x H x W bool)."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    return np.array([sobel(rgb2gray(np.asarray(img).transpose(1, 2, 0)))[~obj].mean()
                     for img, obj in zip(images, objects)])


def quarters(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each frame's quarter 0-3 of ``values``, plain -> cluttered; the three cuts)."""
    cuts = np.quantile(values, [0.25, 0.5, 0.75])
    return np.searchsorted(cuts, values, side="right"), cuts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a population_gpu.py --out folder, with --generations >= 2")
    p.add_argument("--workers", type=int, default=1, help="processes re-rendering the worlds (1)")
    a = p.parse_args(argv)
    run = Path(a.run)
    args = json.loads((run / "population_gpu.json").read_text())["args"]
    names = [s.strip() for s in args["students"].split(",") if s.strip()]
    missing = [str(f) for f in [run / "gen-1" / "data" / "index.npy",
                                *(run / "gen-1" / n / "train.npy" for n in names)] if not f.exists()]
    if missing:
        p.error(f"{missing[0]}: missing; rerun population_gpu.py --generations 2 into {run}")
    train = pg.make_split(args["preset"], pg.pool_videos(args), args["train_seed"], a.workers)
    held = pg.make_split(args["preset"], args["heldout_videos"], args["heldout_seed"], a.workers)
    c = clutter(np.load(run / "data" / "all_images.npy", mmap_mode="r"),
                np.concatenate([v["labels"] for v in train]) > 0)
    c_held = clutter(pg._chw(np.concatenate([v["frames"] for v in held])),
                     np.concatenate([v["labels"] for v in held]) > 0)
    cut = np.quantile(c, 0.75)
    teacher = np.load(run / "gen-1" / "data" / "index.npy")
    best, score = pg.best_by_agreement([np.load(run / "gen-1" / n / "train.npy", mmap_mode="r")
                                        for n in names], args["ensemble"])
    top = args["select_top"] if args["gen2_top"] is None else args["gen2_top"]
    strata = args.get("strata", 1)  # the run's --strata: the same rule as its generation 2
    agree = pg.kept_by_agreement(score, top, np.load(run / "data" / "densities.npy") if strata > 1 else None,
                                 strata)[0]
    rows = {"all training frames": c, "held-out frames": c_held,
            "generation 1 selection (VideoPCA score)": c[teacher],
            f"generation 2 selection (agreement, {args['ensemble']})": c[agree],
            "generation 2 with --keep-teacher (the union)": c[np.union1d(agree, teacher)]}
    print(f"{run}: background clutter (mean Sobel magnitude outside the object); the most "
          f"cluttered quarter of the training frames is > {cut:.4f}")
    print("| frames | count | in the most cluttered quarter | mean clutter |\n|---|---|---|---|")
    for name, x in rows.items():
        print(f"| {name} | {len(x)} | {np.mean(x > cut):.3f} | {x.mean():.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
