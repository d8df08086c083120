"""Selection and evaluation over a pseudo-label store, on Ray Data (no masks on the driver).

Selection keeps the top fraction of frames by score across the whole corpus. A first pass
reads only the ``score`` and ``density`` columns of each store file (16 bytes a frame reach
the driver: 16 MB for a million frames), where the exact thresholds are computed; a second
pass copies the kept rows of the files that have any, each to the same relative path under
the selected store, so the selection keeps the store's own file and row order (students read
it in file order: a rerun trains on the same batches). With ties at the threshold a few more
frames than the fraction may be kept; the report says how many.

With ``strata`` > 1 the top fraction is kept within each edge-density stratum
(:func:`popdistill.selection.scores.stratified_thresholds`). The edge density is stored
beside the score by the actor that masked the frame; a store written before it was (the
column null) has it computed from the image instead.
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

__all__ = ["select_top", "evaluate_store", "stratified_rows", "densities"]

_IMAGE_COLUMNS = ["image", "height", "width", "image_codec"]


def _image(batch, i: int) -> np.ndarray:
    from popdistill.data.schema import decode_image

    def value(name):
        v = batch[name][i]
        return v.as_py() if hasattr(v, "as_py") else v

    names = batch.column_names if hasattr(batch, "column_names") else list(batch)
    codec = value("image_codec") if "image_codec" in names else None
    return decode_image(value("image"), int(value("height")), int(value("width")), codec)


def _column(batch, name: str) -> np.ndarray | None:
    """A float column of a pyarrow table, a numpy batch or a dict of lists (nulls as NaN);
    None when absent."""
    names = batch.column_names if hasattr(batch, "column_names") else list(batch)
    if name not in names:
        return None
    col = batch[name]
    if hasattr(col, "to_numpy") and not isinstance(col, np.ndarray):  # pyarrow: nulls become NaN
        return col.to_numpy(zero_copy_only=False).astype(np.float64)
    col = np.asarray(col)
    if col.dtype == object:
        return np.array([np.nan if v is None else v for v in col], np.float64)
    return col.astype(np.float64)


def densities(batch, rows=None) -> np.ndarray:
    """The edge density of ``rows`` of ``batch`` (all rows by default): the stored ``density``
    column, or, where it is null or absent, computed from the row's image."""
    n = batch.num_rows if hasattr(batch, "num_rows") else len(next(iter(batch.values())))
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    stored = _column(batch, "density")
    out = np.full(rows.size, np.nan) if stored is None else stored[rows]
    for j in np.flatnonzero(np.isnan(out)):
        out[j] = edge_density(_image(batch, int(rows[j])))
    return out


def stratified_rows(batch, scores: np.ndarray, edges: list[float], thresholds: list[float]) -> np.ndarray:
    """Which rows of ``batch`` (a store's table or a numpy batch) the stratified rule (stratum
    ``edges``, per-stratum ``thresholds``) keeps: a score above every stratum's threshold is
    kept and one below all of them is not; the rest by the stratum of their edge density."""
    keep = scores >= max(thresholds)
    between = np.flatnonzero(~keep & (scores >= min(thresholds)))
    if between.size:
        values = densities(batch, between)
        keep[between] = stratified_keep(scores[between], values, np.asarray(edges), np.asarray(thresholds))
    return keep


def _read_scalars(path: str, fs, strata: int):
    """(score, density) of every row of one store file, reading only those columns (and the
    images only where a density is missing)."""
    from popdistill.data.schema import read_frame_columns

    table = read_frame_columns(path, ["score", "density"] if strata > 1 else ["score"], fs)
    scores = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    if strata == 1:
        return scores, np.zeros_like(scores)
    values = _column(table, "density")
    if np.isnan(values).any():
        values = densities(read_frame_columns(path, ["score", "density", *_IMAGE_COLUMNS], fs))
    return scores, values


def _scan(batch: dict, fs, strata: int) -> dict:
    files, scores, values = [], [], []
    for index, path in zip(batch["index"], batch["path"]):
        s, v = _read_scalars(str(path), fs, strata)
        files.append(np.full(s.size, int(index), np.int64))
        scores.append(s)
        values.append(v)
    return {"file": np.concatenate(files), "score": np.concatenate(scores), "density": np.concatenate(values)}


def _copy_kept(batch: dict, fs, root: str, edges: list[float], thresholds: list[float]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from popdistill.data.schema import conform

    kept = []
    for path, target in zip(batch["path"], batch["target"]):
        table = pq.read_table(str(path), filesystem=fs)
        scores = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
        table = table.filter(pa.array(stratified_rows(table, scores, edges, thresholds)))
        if table.num_rows:
            (RunPath.of(root) / str(target)).write_table(conform(table))
        kept.append(table.num_rows)
    return {"kept": np.asarray(kept, np.int64)}


def _files_dataset(rows: list[dict]):
    """One row a store file, in blocks of a few files: Ray Data tasks read them with pyarrow,
    only the columns they need (``ray.data.read_parquet`` cannot leave out a column that some
    files of an older store lack)."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 8 * cpus)))


def select_top(store: RunPath, selected: RunPath, fraction: float, strata: int = 1) -> dict:
    """Write the frames of ``store`` with the top ``fraction`` of scores (of each of ``strata``
    edge-density strata) to ``selected``; returns the selection's report, whose ``strata_edges``
    and ``strata_thresholds`` reproduce it (:func:`evaluate_store`)."""

    files = store.files(".parquet")
    selected.delete()
    if not files:
        return {"fraction": fraction, "threshold": float("nan"), "kept": 0, "total": 0, "store": selected.uri,
                "strata": strata, "strata_edges": [], "strata_thresholds": [float("inf")], "strata_kept": []}
    rows = [{"index": i, "path": f} for i, f in enumerate(files)]
    parts = list(_files_dataset(rows).map_batches(
        _scan, fn_kwargs={"fs": store.fs, "strata": strata}, batch_size=None, batch_format="numpy")
        .iter_batches(batch_size=None, batch_format="numpy"))
    file_of = np.concatenate([p["file"] for p in parts])
    order = np.argsort(file_of, kind="stable")  # the store's own order, however the tasks ran
    file_of = file_of[order]
    scores = ScorePool(np.concatenate([p["score"] for p in parts])[order]).scores()
    values = np.concatenate([p["density"] for p in parts])[order]
    edges, thresholds = stratified_thresholds(scores, values, fraction, strata)
    kept = stratified_keep(scores, values, edges, thresholds)
    # only the files with kept rows are read again, each copied to its own relative path
    prefix = store.path.rstrip("/") + "/"
    todo = [{"path": files[i], "target": files[i][len(prefix):]} for i in np.unique(file_of[kept])]
    if todo:
        copied = sum(int(b["kept"].sum()) for b in _files_dataset(todo).map_batches(
            _copy_kept, fn_kwargs={"fs": store.fs, "root": selected.uri, "edges": edges.tolist(),
                                   "thresholds": thresholds.tolist()}, batch_size=None, batch_format="numpy")
            .iter_batches(batch_size=None, batch_format="numpy"))
        if copied != int(kept.sum()):
            raise RuntimeError(f"selection of {store.uri}: {int(kept.sum())} frames kept by the scores "
                               f"but {copied} copied (was the store changed during selection?)")
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


def _file_metrics(batch: dict, fs, columns: list[str], edges: list[float], thresholds: list[float]) -> dict:
    from popdistill.data.schema import read_frame_columns

    parts = []
    for path in batch["path"]:
        table = read_frame_columns(str(path), columns, fs)
        if edges and np.isnan(_column(table, "density")).any():  # an older store: from the images
            table = read_frame_columns(str(path), columns + [c for c in _IMAGE_COLUMNS if c not in columns], fs)
        parts.append(_frame_metrics(table.to_pydict(), edges, thresholds))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate_store(store: RunPath, selection: dict) -> dict | None:
    """Mean P and J of the teacher's masks over all / selected / rejected frames (``selection``:
    :func:`select_top`'s report), and the centre prior's J, where the store has ground truth;
    None when it has none."""

    files = store.files(".parquet")
    if not files:
        return None
    edges = list(selection.get("strata_edges", []))
    thresholds = list(selection.get("strata_thresholds", [selection["threshold"]]))
    cols = ["frame", "score", "height", "width", "gt_mask", "mask", "mask_height", "mask_width"]
    cols += ["density"] if edges else []
    per_frame = _files_dataset([{"path": f} for f in files]).map_batches(
        _file_metrics, fn_kwargs={"fs": store.fs, "columns": cols, "edges": edges, "thresholds": thresholds},
        batch_size=None, batch_format="numpy")
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
