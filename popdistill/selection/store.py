"""Selection and evaluation over a pseudo-label store, on Ray Data (no masks on the driver).

Selection keeps the top fraction of frames by score across the whole corpus. Only the score
column travels to the driver (8 bytes a frame: 8 MB for a million frames), where
``ScorePool`` gives the exact threshold; the frames themselves are filtered and written as the
selected store by Ray Data. With ties at the threshold a few more frames than the fraction
may be kept; the report says how many.

With ``strata`` > 1 the top fraction is kept within each edge-density stratum
(:func:`popdistill.selection.scores.stratified_thresholds`): Ray Data computes each frame's
edge density from its image, the driver gets (score, edge density) pairs, and the filter
recomputes the density only for frames whose score lies between the lowest and highest
stratum threshold.
"""

from __future__ import annotations

import numpy as np

from popdistill.selection.scores import (
    ScorePool,
    edge_density,
    stratified_keep,
    stratified_thresholds,
    stratum_of,
)
from popdistill.storage import RunPath

__all__ = ["select_top", "evaluate_store", "stratified_rows"]


def _image(batch, i: int) -> np.ndarray:
    h, w = int(batch["height"][i]), int(batch["width"][i])
    data = batch["image"][i]
    return np.frombuffer(data.as_py() if hasattr(data, "as_py") else data, dtype=np.uint8).reshape(h, w, 3)


def stratified_rows(batch, scores: np.ndarray, edges: list[float], thresholds: list[float]) -> np.ndarray:
    """Which rows of ``batch`` (a store's table or a numpy batch with its image columns) the
    stratified rule (stratum ``edges``, per-stratum ``thresholds``) keeps: a score above every
    stratum's threshold is kept and one below all of them is not, without decoding the image;
    the rest by the stratum of their image's edge density."""
    keep = scores >= max(thresholds)
    between = np.flatnonzero(~keep & (scores >= min(thresholds)))
    if between.size:
        values = np.array([edge_density(_image(batch, int(i))) for i in between])
        keep[between] = stratified_keep(scores[between], values, np.asarray(edges), np.asarray(thresholds))
    return keep


def _keep(batch, edges: list[float], thresholds: list[float]):
    import pyarrow as pa

    scores = batch["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    return batch.filter(pa.array(stratified_rows(batch, scores, edges, thresholds)))


def _score_and_density(batch: dict) -> dict:
    n = len(batch["score"])
    return {"score": np.asarray(batch["score"], np.float64),
            "density": np.array([edge_density(_image(batch, i)) for i in range(n)], np.float64)}


def _scores_and_values(store: RunPath, files: list[str], strata: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Every frame's score and, with strata, its edge density (scalars only reach the driver)."""
    import ray

    ds = ray.data.read_parquet(files, filesystem=store.fs)
    if strata == 1:
        pool = ScorePool()
        for batch in ds.select_columns(["score"]).iter_batches(batch_size=65536, batch_format="numpy"):
            pool.add(batch["score"])
        return pool.scores(), None
    parts = list(ds.select_columns(["score", "image", "height", "width"])
                 .map_batches(_score_and_density, batch_format="numpy")
                 .iter_batches(batch_size=65536, batch_format="numpy"))
    return (np.concatenate([b["score"] for b in parts]).astype(np.float64),
            np.concatenate([b["density"] for b in parts]))


def select_top(store: RunPath, selected: RunPath, fraction: float, strata: int = 1) -> dict:
    """Write the frames of ``store`` with the top ``fraction`` of scores (of each of ``strata``
    edge-density strata) to ``selected``; returns the selection's report, whose ``strata_edges``
    and ``strata_thresholds`` reproduce it (:func:`evaluate_store`)."""
    import ray

    files = store.files(".parquet")
    selected.delete()
    if not files:
        return {"fraction": fraction, "threshold": float("nan"), "kept": 0, "total": 0, "store": selected.uri,
                "strata": strata, "strata_edges": [], "strata_thresholds": [float("inf")], "strata_kept": []}
    scores, values = _scores_and_values(store, files, strata)
    if values is None:  # one stratum: every frame in it
        values = np.zeros_like(scores)
    edges, thresholds = stratified_thresholds(scores, values, fraction, strata)
    kept_ds = ray.data.read_parquet(files, filesystem=store.fs).map_batches(
        _keep, fn_kwargs={"edges": edges.tolist(), "thresholds": thresholds.tolist()}, batch_format="pyarrow")
    # the selected rows in the store's own order, whatever order the tasks finish in: students
    # read the selection in file order, so a rerun trains on the same batches
    kept_ds.context.execution_options.preserve_order = True
    kept_ds.write_parquet(selected.path, filesystem=selected.fs)
    kept = stratified_keep(scores, values, edges, thresholds)
    which = stratum_of(values, edges)
    return {"fraction": fraction, "threshold": float(np.min(thresholds)), "kept": int(kept.sum()),
            "total": int(scores.size), "store": selected.uri, "strata": strata,
            "strata_edges": edges.tolist(), "strata_thresholds": thresholds.tolist(),
            "strata_kept": np.bincount(which[kept], minlength=strata).tolist()}


def _frame_metrics(batch: dict, edges: list[float], thresholds: list[float]) -> dict:
    from popdistill.evaluate.baselines import centre_prior
    from popdistill.evaluate.metrics import binarize, jaccard, pixel_accuracy, resize_mask

    n = len(batch["frame"])
    scores = np.asarray(batch["score"], dtype=np.float64)
    out = {"score": scores, "p": np.full(n, np.nan), "j": np.full(n, np.nan),
           "centre_j": np.full(n, np.nan), "selected": stratified_rows(batch, scores, edges, thresholds)}
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


def evaluate_store(store: RunPath, selection: dict) -> dict | None:
    """Mean P and J of the teacher's masks over all / selected / rejected frames (``selection``:
    :func:`select_top`'s report), and the centre prior's J, where the store has ground truth;
    None when it has none."""
    import ray

    files = store.files(".parquet")
    if not files:
        return None
    edges = list(selection.get("strata_edges", []))
    thresholds = list(selection.get("strata_thresholds", [selection["threshold"]]))
    cols = ["frame", "score", "height", "width", "gt_mask", "mask", "mask_height", "mask_width"]
    ds = ray.data.read_parquet(files, filesystem=store.fs).select_columns(cols + (["image"] if edges else []))
    per_frame = ds.map_batches(_frame_metrics, fn_kwargs={"edges": edges, "thresholds": thresholds},
                               batch_format="numpy")
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
