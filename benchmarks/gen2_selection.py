"""Generation-2 selection on a finished `popdistill run`: which scorer keeps the best labels?

From a run directory with generation 2's predictions (``gen-2/predict/<student>/store``) and
generation 1's teacher store, the J (against ground truth) of the top ``--top`` frames each
selection keeps: the teacher's own score (generation 1), the students' agreement (cosine to
their Multi-Net product), the same with VideoPCA's masks as candidates
(``selection.with_teacher``), and the oracle (each frame's best candidate by true J). Empty
masks score 0, as in the pipeline.

    .venv/bin/python benchmarks/gen2_selection.py runs/quickstart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _load(store: Path) -> dict:
    import pyarrow.parquet as pq

    from popdistill.data.schema import table_to_records

    return {(r.video, int(r.frame)): r for f in sorted(store.rglob("*.parquet"))
            for r in table_to_records(pq.read_table(f))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a `popdistill run` directory with generation 2's predictions")
    p.add_argument("--top", type=float, default=0.2, help="fraction of frames kept (0.2)")
    a = p.parse_args()
    import torch

    from popdistill.evaluate.metrics import binarize, jaccard, resize_mask
    from popdistill.selection.rescore import agreement_scores, best_per_frame, empty_masks

    run = Path(a.run)
    students = sorted(d.name for d in (run / "gen-2" / "predict").iterdir() if (d / "store").is_dir())
    cands = {s: _load(run / "gen-2" / "predict" / s / "store") for s in students}
    teacher = _load(run / "gen-1" / "teacher" / "store")
    keys = sorted(set(teacher).intersection(*cands.values()))
    names = [*students, "videopca"]
    cands["videopca"] = teacher
    gt = [teacher[k].gt_mask for k in keys]
    j = np.array([[jaccard(binarize(resize_mask(cands[n][k].mask, g.shape)), g) for n in names]
                  for k, g in zip(keys, gt)])
    n_keep = int(a.top * len(keys))

    def kept_j(scores: np.ndarray) -> float:
        best, score = best_per_frame(scores)
        top = np.argsort(-score, kind="stable")[:n_keep]
        return float(j[np.arange(len(keys)), best][top].mean())

    def agreement(ns: list[str]) -> np.ndarray:
        masks = [torch.from_numpy(np.stack([cands[n][k].mask for k in keys]).astype(np.float32))[:, None]
                 for n in ns]
        sc = agreement_scores(masks).numpy()
        sc[empty_masks(masks)] = 0.0
        out = np.zeros_like(j)
        out[:, [names.index(n) for n in ns]] = sc
        return out

    own = np.zeros_like(j)
    own[:, -1] = [teacher[k].score for k in keys]
    print(f"{len(keys)} training frames, top {a.top:.0%} = {n_keep}; mean J per candidate: "
          + ", ".join(f"{n} {m:.3f}" for n, m in zip(names, j.mean(0))))
    print("| selection | label J of the kept frames |\n|---|---|")
    for label, scores in (("teacher's own score (generation 1)", own),
                          ("agreement, students", agreement(students)),
                          ("agreement, students + VideoPCA", agreement(names)),
                          ("oracle (true J)", j)):
        print(f"| {label} | {kept_j(scores):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
