"""The selection rule of every generation, on per-frame scores, and the selected store.

A frame is kept when its score reaches the threshold of its edge-density stratum (one stratum
without ``strata``) and is > 0 (an empty mask scores 0). The threshold is a fixed
``selection.threshold`` or the one keeping the ``top`` fraction
(:func:`popdistill.selection.scores.top_fraction_threshold`). Generation 1 applies it on Ray
Data over the teacher's store (:func:`popdistill.selection.store.select_top`); generations
>= 2 over the per-video files of the rescored masks (:func:`select_scored`).

    selection_rule(scores, top, threshold, densities, strata)   (stratum edges, thresholds)
    kept_by_rule(scores, densities, rule)                       which frames it keeps
    select_scored(scored, selected, ...)                        the kept frames as a store
    add_missing_frames(selected, teacher_selected)              + generation 1's selected
                                                                frames it lacks
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popdistill.selection.scores import ScorePool, stratified_keep, stratified_thresholds
from popdistill.storage import RunPath

__all__ = ["kept_scores", "selection_rule", "kept_by_rule", "select_scored", "Selected",
           "add_missing_frames"]


def kept_scores(scores, threshold: float) -> np.ndarray:
    """The selection rule: score >= ``threshold`` and > 0 (an empty mask scores 0: never kept)."""
    scores = np.asarray(scores, np.float64)
    return (scores >= threshold) & (scores > 0)


def selection_rule(scores, top: float, threshold: float | None, densities=None,
                   strata: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(stratum edges, thresholds) of the selection: a fixed ``threshold``, or the one keeping
    the ``top`` fraction of ``scores``, or with ``strata`` > 1 the top fraction of each
    edge-density stratum (``densities``: each frame's edge density;
    :func:`popdistill.selection.scores.stratified_thresholds`)."""
    scores = np.asarray(scores, np.float64)
    if threshold is not None:
        return np.zeros(0), np.array([float(threshold)])
    if strata > 1 and scores.size:
        return stratified_thresholds(scores, np.asarray(densities, np.float64), top, strata)
    return np.zeros(0), np.array([ScorePool(scores).threshold(top) if scores.size else 1.0])


def kept_by_rule(scores, densities, rule: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`kept_scores` under a :func:`selection_rule` (``densities`` may be None without
    strata)."""
    scores = np.asarray(scores, np.float64)
    cuts, thresholds = rule
    values = np.zeros_like(scores) if densities is None or not cuts.size else np.asarray(densities, np.float64)
    return stratified_keep(scores, values, cuts, thresholds) & (scores > 0)


@dataclass(frozen=True)
class Selected:
    """What :func:`select_scored` kept: ``threshold`` (the lowest stratum's with strata) and
    ``kept``, one bool per score, in the order of the ``scores`` it was given."""

    threshold: float
    kept: np.ndarray


def select_scored(
    scored: RunPath, selected: RunPath, scores: list[float], top: float, threshold: float | None,
    densities: list[float] | None = None, strata: int = 1,
) -> Selected:
    """Write the frames of ``scored`` that :func:`kept_scores` keeps at the threshold
    (``threshold``, or the one keeping the ``top`` fraction of ``scores``; with ``strata`` > 1
    the one of the frame's edge-density stratum, ``densities`` being every frame's) to
    ``selected``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from popdistill.selection.store import stratified_rows

    cuts, thresholds = selection_rule(scores, top, threshold, densities, strata)
    selected.delete()
    for f in scored.files(".parquet"):
        table = pq.read_table(f, filesystem=scored.fs)
        values = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
        keep = stratified_rows(table, values, cuts.tolist(), thresholds.tolist()) & (values > 0)
        table = table.filter(pa.array(keep))
        if table.num_rows:
            (selected / f.rsplit("/", 1)[-1]).write_table(table)
    return Selected(float(np.min(thresholds)), kept_by_rule(scores, densities, (cuts, thresholds)))


def add_missing_frames(selected: RunPath, other: RunPath) -> int:
    """Copy the frames of the store ``other`` (generation 1's selected VideoPCA masks) whose
    (video, frame) ``selected`` lacks into ``selected`` as ``keep-teacher-<i>.parquet``, one
    file of ``other`` at a time; returns how many. Run after :func:`select_scored`, which
    clears ``selected``, so that running both again gives the same store."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from popdistill.data.schema import records_to_table, table_to_records

    def keys(table: pa.Table) -> pa.Array:
        return pc.binary_join_element_wise(table["video"], pc.cast(table["frame"], pa.string()), "\x00")

    have = [pq.read_table(f, columns=["video", "frame"], filesystem=selected.fs)
            for f in selected.files(".parquet")]
    known = keys(pa.concat_tables(have)).combine_chunks() if have else pa.array([], pa.string())
    added = 0
    for i, f in enumerate(other.files(".parquet")):
        table = pq.read_table(f, filesystem=other.fs)
        table = table.filter(pc.invert(pc.is_in(keys(table), value_set=known)))
        if table.num_rows:  # written in FRAME_SCHEMA, as every file of the selected store
            (selected / f"keep-teacher-{i:05d}.parquet").write_table(
                records_to_table(table_to_records(table)))
            added += table.num_rows
    return added
