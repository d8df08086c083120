"""Generation-2 labels of a ``population_gpu.py`` run: how good is each selection rule's training set?

``population_gpu.py --generations 2`` caches every generation-1 student's mask of every training
frame (``OUT/gen-1/<student>/train.npy``). This script re-renders the training world of that run
(the same arguments, from ``OUT/population_gpu.json``) to get its ground truth, then prints, for
each rule and kept fraction: frames, videos, the labels' J against ground truth, the labels'
foreground area beside the true one, and which student's masks were kept.
With ``--labels``, each agreement rule's kept frames also get the other labels of
``population_gpu.py --gen2-labels`` (the students' ensemble mask, or that mask binarised).
``--by-clutter`` adds each rule's label area over the true area on each quarter of the
training frames' background clutter (``selection_coverage.clutter``): where its labels
over- (> 1) or under-segment.

Rules: generation 1's (the teacher's masks, top by VideoPCA score); the agreement of each
student's mask with the students' Multi-Net ``product`` (the thesis) and with its n-th root
``geomean`` (``popdistill.students.multinet.multinet_mask``). Ground truth is only measured here;
no rule sees it.

    .venv/bin/python benchmarks/gen2_labels.py runs/small128 --tops 0.2,0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a population_gpu.py --generations 2 output folder")
    p.add_argument("--tops", default="0.2,0.3", help="kept fractions, comma-separated (0.2,0.3)")
    p.add_argument("--labels", default="best",
                   help="population_gpu.py --gen2-labels rules to measure, comma-separated "
                        "(best; also multinet, multinet-binary, multinet-product)")
    p.add_argument("--strata", type=int, default=None,
                   help="edge-density strata of every selection (default: the run's --strata)")
    p.add_argument("--by-clutter", action="store_true",
                   help="also each rule's label area / true area by background-clutter quarter")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    import torch
    from population_gpu import (
        best_by_agreement,
        evaluate,
        gen2_labels,
        kept_by_agreement,
        make_split,
        pool_videos,
    )

    from popdistill.pipeline.rescore import LABELS
    from popdistill.students.base import resize_to
    from popdistill.teacher.selection import stratified_keep, stratified_thresholds

    rules = [r.strip() for r in a.labels.split(",") if r.strip()]
    if bad := [r for r in rules if r not in LABELS]:
        p.error(f"--labels: {', '.join(bad)} not among {', '.join(LABELS)}")

    out = Path(a.out)
    args = json.loads((out / "population_gpu.json").read_text())["args"]
    names = [s.strip() for s in args["students"].split(",") if s.strip()]
    train = make_split(args["preset"], pool_videos(args), args["train_seed"], a.workers)
    gt = np.concatenate([v["labels"] for v in train])
    video = np.concatenate([[i] * len(v["labels"]) for i, v in enumerate(train)])
    masks = [np.load(out / "gen-1" / n / "train.npy", mmap_mode="r") for n in names]
    if any(m.shape[0] != len(gt) for m in masks):
        raise SystemExit(f"{out}: the cached masks do not match the rendered training world")

    quarter = None
    if a.by_clutter:
        from selection_coverage import clutter, quarters

        quarter = quarters(clutter(np.concatenate([v["frames"] for v in train]).transpose(0, 3, 1, 2), gt > 0))[0]

    def row(rule: str, keep: np.ndarray, labels: np.ndarray, chosen: str = "") -> None:
        # at the frames' size, as population_gpu.py trains generation 2 on them
        labels = resize_to(torch.from_numpy(labels)[:, None], gt.shape[1:])[:, 0].numpy()
        m = evaluate(["train"] * len(keep), labels, gt[keep])
        area = float((labels >= 0.5).mean())
        by_q = "" if quarter is None else "".join(
            f" {(labels[quarter[keep] == q] >= 0.5).sum() / max((gt[keep][quarter[keep] == q] > 0).sum(), 1):.3f} |"
            for q in range(4))
        print(f"| {rule} | {len(keep)} | {len(set(video[keep]))} | {m['J']:.3f} | {m['P']:.3f} | {area:.4f} | "
              f"{float((gt[keep] > 0).mean()):.4f} |{by_q} {chosen} |", flush=True)

    print(f"{out}: {len(gt)} training frames of {len(train)} videos; students {', '.join(names)}\n")
    extra = "" if quarter is None else " area / true, clutter Q1 | Q2 | Q3 | Q4 |"
    print(f"| rule | frames | videos | label J | label P | label area | true area |{extra} masks from |")
    print("|---|---|---|---|---|---|---|---|" + ("" if quarter is None else "---|" * 4))
    tops = [float(t) for t in a.tops.split(",")]
    first = train[: args["videos"]]  # the teacher's selection sees only generation 1's videos
    scores = np.concatenate([v["scores"] for v in first])
    teacher = np.concatenate([v["masks"] for v in first])
    strata = args.get("strata", 1) if a.strata is None else a.strata
    densities = np.concatenate([v["densities"] for v in train])
    for top in tops:  # the run's generation-1 selection (population_gpu.py's main)
        cuts, thrs = stratified_thresholds(scores, densities[: len(scores)], top, strata)
        keep = np.flatnonzero(stratified_keep(scores, densities[: len(scores)], cuts, thrs))
        row(f"generation 1: VideoPCA, top {top:g}", keep, teacher[keep])
    for ensemble in ("product", "geomean"):
        best, best_score = best_by_agreement(masks, ensemble)
        for top in tops:
            keep = kept_by_agreement(best_score, top, densities, strata)[0]
            chosen = ", ".join(f"{n} {int((best[keep] == k).sum())}" for k, n in enumerate(names))
            for rule in rules:
                labels = gen2_labels(masks, keep, best, gt.shape[1:], rule, ensemble)
                row(f"agreement ({ensemble}), top {top:g}" + ("" if rule == "best" else f": {rule}"),
                    keep, labels, chosen if rule == "best" else "all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
