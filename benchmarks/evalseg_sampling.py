"""EvalSeg-Net: how its training frames are drawn decides whether it ranks masks.

From a finished ``population_quality.py`` run (its training-world teacher store and
generation-1 students): EvalSeg-Net is trained on the students' masks of (a) the first
``--frames`` frames in store order — what ``train_evalseg`` did before: the first videos
only — and (b) the same number of frames spread evenly over the first ``--train-videos``
videos (``spread_rows``, what it does now), optionally at a second learning rate. Each is then
scored on every student's masks of the remaining videos: Spearman's rho between its score and
the masks' true J, and the mean true J of the masks it would select (each frame's best
student, top 20 % of frames) beside the same selection by the exact target (agreement with
the Multi-Net product) and the teacher's own selection.

    .venv/bin/python benchmarks/evalseg_sampling.py --previous runs/pq250
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--previous", required=True, help="finished population_quality.py run")
    p.add_argument("--frames", type=int, default=960, help="EvalSeg-Net training frames")
    p.add_argument("--train-videos", type=int, default=200, help="videos EvalSeg-Net may see")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lrs", default="1e-4,1e-3", help="learning rates for the spread variant")
    p.add_argument("--model", default="evalseg_tiny")
    p.add_argument("--model-kwargs", default="{}", help='JSON create_evalseg keywords, e.g. {"width": 16}')
    p.add_argument("--spread-only", action="store_true", help="skip the first-frames variant")
    p.add_argument("--top", type=float, default=0.2)
    return p.parse_args()


def _video(path: Path):
    import pyarrow.parquet as pq
    import torch

    from popdistill.data.schema import table_to_records

    recs = sorted((r for f in sorted(path.glob("*.parquet")) for r in table_to_records(pq.read_table(f))),
                  key=lambda r: r.frame)
    images = torch.from_numpy(np.stack([r.image for r in recs])).permute(0, 3, 1, 2)
    return images, np.stack([r.gt_mask for r in recs]).astype(bool), np.array([r.score for r in recs]), recs


def _jaccard(soft: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame J of soft masks (N x H x W) at 0.5 against ground truth (N x H x W)."""
    from popdistill.evaluate.metrics import binarize, jaccard

    return np.array([jaccard(binarize(m), g) for m, g in zip(soft, gt)])


def main() -> int:
    a = parse_args()
    import torch
    from scipy.stats import spearmanr

    from popdistill.pipeline.rescore import agreement_scores
    from popdistill.students import create_evalseg, load_checkpoint
    from popdistill.students.base import resize_to
    from popdistill.train.evalseg import (
        _concat,
        build_pairs,
        fit_evalseg,
        score_masks,
        spread_rows,
        student_masks,
    )

    torch.set_num_threads(1)
    prev = Path(a.previous)
    names = list(json.loads((prev / "population_quality.json").read_text())["models"])
    students = [load_checkpoint(prev / "train" / n / "local" / "model.pt")[0].eval() for n in names]
    videos = sorted(p for p in (prev / "teacher_train" / "teacher" / "store").iterdir() if p.is_dir())
    seen, unseen = videos[: a.train_videos], videos[a.train_videos :]
    t0 = time.perf_counter()
    first, spread, left = [], [], a.frames
    counts, seen_images = [], []
    for v in seen:
        images = _video(v)[0]
        seen_images.append(images)
        counts.append(len(images))
        if left > 0:
            first.append(images[:left])
            left -= len(first[-1])
    for images, rows in zip(seen_images, spread_rows(counts, a.frames)):
        if rows:
            spread.append(images[rows])
    del seen_images
    test = [_video(v) for v in unseen]
    with torch.no_grad():
        masks = [student_masks(students, im, 64) for im, *_ in test]
    sj = np.concatenate([np.stack([_jaccard(resize_to(m, gt.shape[1:])[:, 0].numpy(), gt) for m in ms], 1)
                         for ms, (_, gt, *_) in zip(masks, test)])
    cos = np.concatenate([agreement_scores(ms).numpy() for ms in masks])
    tj = np.concatenate([
        _jaccard(resize_to(torch.from_numpy(np.stack([r.mask for r in recs]))[:, None].float(),
                           gt.shape[1:])[:, 0].numpy(), gt)
        for _, gt, _, recs in test])
    ts = np.concatenate([s for _, _, s, _ in test])
    n, k = len(sj), int(a.top * len(sj))

    def selected_j(score: np.ndarray) -> float:
        best = score.argmax(1)
        order = np.argsort(-score[np.arange(n), best])[:k]
        return float(sj[np.arange(n), best][order].mean())

    print(f"{len(unseen)} unseen videos, {n} frames x {len(names)} students; loaded in "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"teacher's selection (VideoPCA score, top {a.top:.0%}): label J {tj[np.argsort(-ts)[:k]].mean():.3f}")
    print(f"exact target (agreement with the Multi-Net product): rho {spearmanr(cos.ravel(), sj.ravel())[0]:.3f}, "
          f"selected J {selected_j(cos):.3f}")
    variants = [] if a.spread_only else [("first frames in store order", first, 1e-4)]
    variants += [("spread over the videos", spread, float(lr)) for lr in a.lrs.split(",")]
    for label, chunks, lr in variants:
        torch.manual_seed(0)
        model = create_evalseg(a.model, **json.loads(a.model_kwargs))
        with torch.no_grad():
            pairs = _concat([build_pairs(students, c, model.input_size) for c in chunks])
        t = time.perf_counter()
        losses = fit_evalseg(model, pairs, a.epochs, 16, lr)
        es = np.concatenate([torch.stack([score_masks(model, im, m) for m in ms], 1).numpy()
                             for ms, (im, *_) in zip(masks, test)])
        print(f"EvalSeg-Net, {label}, lr {lr:g}: {len(pairs)} pairs, loss {losses[0]:.4f} -> "
              f"{losses[-1]:.4f}; rho {spearmanr(es.ravel(), sj.ravel())[0]:.3f}, selected J "
              f"{selected_j(es):.3f}, score std {es.std():.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
