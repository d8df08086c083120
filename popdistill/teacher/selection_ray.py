"""Selection and evaluation over a pseudo-label store, on Ray Data (no masks on the driver).

Selection keeps the top fraction of frames by score across the whole corpus. Only the score
column travels to the driver (8 bytes a frame: 8 MB for a million frames), where
``ScorePool`` gives the exact threshold; the frames themselves are filtered and written as the
selected store by Ray Data. With ties at the threshold a few more frames than the fraction
may be kept; the report says how many.
"""

from __future__ import annotations

import numpy as np

from popdistill.storage import RunPath
from popdistill.teacher.selection import ScorePool, keep_mask

__all__ = ["select_top", "evaluate_store"]


def _keep(batch, threshold: float):
    import pyarrow.compute as pc

    return batch.filter(pc.greater_equal(batch["score"], threshold))


def select_top(store: RunPath, selected: RunPath, fraction: float) -> dict:
    import ray

    files = store.files(".parquet")
    selected.delete()
    if not files:
        return {"fraction": fraction, "threshold": float("nan"), "kept": 0, "total": 0, "store": selected.uri}
    pool = ScorePool()
    scores = ray.data.read_parquet(files, filesystem=store.fs).select_columns(["score"])
    for batch in scores.iter_batches(batch_size=65536, batch_format="numpy"):
        pool.add(batch["score"])
    total = len(pool)
    threshold = pool.threshold(fraction)
    kept_ds = ray.data.read_parquet(files, filesystem=store.fs).map_batches(
        _keep, fn_kwargs={"threshold": threshold}, batch_format="pyarrow"
    )
    kept_ds.write_parquet(selected.path, filesystem=selected.fs)
    kept = int(keep_mask(pool.scores(), threshold).sum())
    return {"fraction": fraction, "threshold": threshold, "kept": int(kept), "total": int(total), "store": selected.uri}


def _frame_metrics(batch: dict, threshold: float) -> dict:
    from popdistill.evaluate.baselines import centre_prior
    from popdistill.evaluate.metrics import binarize, jaccard, pixel_accuracy, resize_mask

    n = len(batch["frame"])
    out = {"score": np.asarray(batch["score"], dtype=np.float64), "p": np.full(n, np.nan), "j": np.full(n, np.nan),
           "centre_j": np.full(n, np.nan), "selected": np.asarray(batch["score"]) >= threshold}
    for i in range(n):
        if batch["gt_mask"][i] is None:
            continue
        h, w = int(batch["height"][i]), int(batch["width"][i])
        gt = np.frombuffer(batch["gt_mask"][i], dtype=np.uint8).reshape(h, w).astype(bool)
        mh, mw = int(batch["mask_height"][i]), int(batch["mask_width"][i])
        mask = np.frombuffer(batch["mask"][i], dtype=np.uint8).reshape(mh, mw).astype(np.float32) / 255.0
        pred = binarize(resize_mask(mask, (h, w)))
        out["p"][i], out["j"][i] = pixel_accuracy(pred, gt), jaccard(pred, gt)
        out["centre_j"][i] = jaccard(binarize(centre_prior(h, w)), gt)
    return out


def evaluate_store(store: RunPath, threshold: float) -> dict | None:
    """Mean P and J of the teacher's masks over all / selected / rejected frames, and the
    centre prior's J, where the store has ground truth; None when it has none."""
    import ray

    files = store.files(".parquet")
    if not files:
        return None
    cols = ["frame", "score", "height", "width", "gt_mask", "mask", "mask_height", "mask_width"]
    ds = ray.data.read_parquet(files, filesystem=store.fs).select_columns(cols)
    per_frame = ds.map_batches(_frame_metrics, fn_kwargs={"threshold": threshold}, batch_format="numpy")
    cols = per_frame.to_pandas()  # scalars only: five numbers per frame
    have = cols["j"].notna()
    if not have.any():
        return None
    cols = cols[have]

    def summary(rows) -> dict:
        return {"frames": int(len(rows)), "P": float(rows["p"].mean()) if len(rows) else None,
                "J": float(rows["j"].mean()) if len(rows) else None}

    return {
        "all": summary(cols),
        "selected": summary(cols[cols["selected"]]),
        "rejected": summary(cols[~cols["selected"]]),
        "centre_prior": {"frames": int(len(cols)), "J": float(cols["centre_j"].mean())},
        "spearman_score_vs_j": float(cols[["score", "j"]].corr(method="spearman").iloc[0, 1]),
    }
