"""Generation >= 2 selection: every student's mask of every training frame is scored, each
frame keeps its best-scored mask, then the best frames are kept.

Two scorers (``SelectionConfig.scorer``):

* ``evalseg`` (the thesis): EvalSeg-Net's predicted quality of (image, mask).
* ``agreement``: EvalSeg-Net's own training target computed exactly — the cosine similarity
  of the mask to the Multi-Net product of all the students' masks of that frame. At
  generation >= 2 every candidate frame has every student's mask, so the target needs no
  network; on the embedded corpus it ranks masks by true J better than the trained net does
  (docs/experiments/history.md).

Both measure agreement with ``SelectionConfig.ensemble``: the students' ``product`` (the thesis)
or its n-th root ``geomean``, which does not favour the most conservative student's masks
(docs/experiments/history.md).

    rescore_predictions(stores, evalseg, scored)   one Parquet file per video: each frame's
                                                   best mask, ``score`` = its score
    select_scored(scored, selected, top|threshold)  the kept frames as the selected store (the
                                                   top of each edge-density stratum with strata)
    add_missing_frames(selected, teacher_selected)  + generation 1's selected frames it lacks
                                                   (``SelectionConfig.keep_teacher``)

Both are resumable per video / idempotent. Only one video's frames are in memory at a time;
the per-frame scores (and J where there is ground truth) are returned for the statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from popdistill.storage import RunPath
from popdistill.teacher.selection import edge_density

SCORERS = ("evalseg", "agreement")
# what a kept frame's label is: its best mask, the candidates' ensemble mask, that binarised,
# or their plain product
LABELS = ("best", "multinet", "multinet-binary", "multinet-product")

__all__ = [
    "LABELS",
    "SCORERS",
    "add_missing_frames",
    "agreement_scores",
    "best_per_frame",
    "empty_masks",
    "ensemble_labels",
    "label_support",
    "rescore_predictions",
    "kept_by_rule",
    "select_scored",
    "selection_rule",
]


def best_per_frame(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the best student, its score) per frame for scores frames x students; ties go
    to the first student."""
    scores = np.asarray(scores, np.float64)
    best = np.argmax(scores, axis=1)
    return best, scores[np.arange(len(scores)), best]


def agreement_scores(masks: Sequence[Any], ensemble: str = "product") -> Any:
    """Frames x students: the cosine similarity of each student's masks (B x 1 x h x w
    tensors, any sizes; resized to the largest first) to their Multi-Net (``ensemble``:
    ``product`` or ``geomean``, :func:`popdistill.students.multinet.multinet_mask`)."""
    from popdistill.students.base import resize_to
    from popdistill.train.evalseg import evalseg_targets

    size = max((tuple(m.shape[-2:]) for m in masks), key=lambda hw: hw[0] * hw[1])
    return evalseg_targets([resize_to(m, size) for m in masks], ensemble)[1]


def empty_masks(masks: Sequence[Any], threshold: float = 0.5) -> np.ndarray:
    """Frames x students: True where a mask has no pixel >= ``threshold`` (empty once
    binarised). Such a mask is never selected, whatever its score: it would teach "no object"."""
    return np.stack([m.flatten(1).amax(1).numpy() < threshold for m in masks], axis=1)


def ensemble_labels(masks: Sequence[Any], rule: str, ensemble: str = "product") -> Any:
    """Frames x h x w float32 labels from every candidate's masks of those frames (B x 1 x h x w
    tensors, any sizes; the largest wins): ``multinet``, their ``ensemble`` mask
    (:func:`popdistill.students.multinet.multinet_mask`); ``multinet-binary``, 1 where their
    geometric mean is >= 0.5 (the product >= 0.5^n), else 0: the ensemble's mask without the
    students' faint halo, which a soft label would teach; ``multinet-product``, their plain
    pixel-wise product whatever ``ensemble`` is (the thesis's Multi-Net: soft, and only as
    large as what every student marks, so it leans to precision)."""
    from popdistill.students.multinet import multinet_mask

    if rule not in LABELS[1:]:
        raise ValueError(f"labels: {rule!r} is not one of {', '.join(LABELS[1:])}")
    if rule in ("multinet", "multinet-product"):
        return multinet_mask(masks, None, ensemble if rule == "multinet" else "product")[:, 0].float()
    return (multinet_mask(masks, None, "geomean")[:, 0] >= 0.5).float()


def label_support(masks: np.ndarray, high: float = 0.8, low: float = 0.5) -> np.ndarray:
    """The teacher's last step (PAPERS.md, VideoPCA step 7) applied to students' masks before
    they become labels: on each frame's mask min-max normalised, keep the pixels >= ``low``
    8-connected to a pixel >= ``high``, and zero the rest of the (unnormalised) mask.
    ``masks``: (H, W) or (N, H, W) in [0, 1]; float32 out. Relative thresholds keep every
    non-constant mask non-empty, however faint its student.

    A student's mask has a faint halo (values below 0.5 around and away from the object) that
    the teacher's masks do not; regressed as a label, it may teach the next generation to
    over-segment (docs/experiments/history.md)."""
    import torch

    from popdistill.teacher.videopca_ops import above_fraction, hysteresis

    m = np.asarray(masks, np.float32)
    frames = m.reshape((-1,) + m.shape[-2:])
    t = torch.from_numpy(frames)
    support = hysteresis(above_fraction(t, high, "frame"), above_fraction(t, low, "frame"))
    return (frames * support).reshape(m.shape)


def _video_records(store: RunPath, video_dir: str) -> dict[int, Any]:
    import pyarrow.parquet as pq

    from popdistill.data.schema import table_to_records

    out = {}
    for f in (store / video_dir).files(".parquet"):
        for r in table_to_records(pq.read_table(f, filesystem=store.fs)):
            out[int(r.frame)] = r
    return out


def _frame_j(mask: np.ndarray, gt: np.ndarray | None) -> float:
    from popdistill.evaluate.metrics import binarize, jaccard, resize_mask

    if gt is None:
        return float("nan")
    return jaccard(binarize(resize_mask(mask, gt.shape[:2])), np.asarray(gt, bool))


def rescore_predictions(
    stores: Mapping[str, str],
    evalseg_checkpoint: str | None,
    scored: RunPath,
    generation: int,
    batch_size: int = 64,
    log: Callable[[str], None] = print,
    scorer: str = "evalseg",
    ensemble: str = "product",
    support: bool = False,
    labels: str = "best",
    gpu: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Score each student's masks (``stores``: student -> prediction store) with ``scorer``
    (EvalSeg-Net, or the students' agreement with their ``ensemble`` mask) and write each
    frame's best one to ``scored/<video>.parquet`` (teacher ``<scorer>:<student>``, ``score``,
    ``generation``), zeroed outside its :func:`label_support` when ``support``; ``j`` is the
    written mask's. With ``labels`` other than ``best`` the written mask is the frame's
    :func:`ensemble_labels` of all the students' masks instead (the score, and so the
    selection, stays the best mask's).
    Videos already scored are skipped. Returns per-frame ``scores``, ``j`` and the ``chosen``
    counts. EvalSeg-Net runs on CUDA where ``gpu`` allows it, at ``precision``."""
    import torch

    from popdistill.data.schema import records_to_table
    from popdistill.students import load_checkpoint
    from popdistill.students.device import local_device, resolve_precision
    from popdistill.train.evalseg import score_masks

    if scorer not in SCORERS:
        raise ValueError(f"scorer: {scorer!r} is not one of {', '.join(SCORERS)}")
    if labels not in LABELS:
        raise ValueError(f"labels: {labels!r} is not one of {', '.join(LABELS)}")
    device = local_device(gpu)
    precision = resolve_precision(precision, device)
    model = (load_checkpoint(evalseg_checkpoint, map_location=device)[0].eval()
             if scorer == "evalseg" else None)
    names = list(stores)
    roots = {n: RunPath.of(p) for n, p in stores.items()}
    videos = sorted(set.intersection(*(set(r.listdir()) for r in roots.values())))
    stats = scored / "stats"
    chosen = dict.fromkeys(names, 0)
    all_scores: list[float] = []
    all_j: list[float] = []
    all_densities: list[float] = []
    for video in videos:
        target = scored / f"{video}.parquet"
        if target.exists() and (stats / f"{video}.json").exists():
            info = (stats / f"{video}.json").read_json()
        else:
            per_student = {n: _video_records(roots[n], video) for n in names}
            frames = sorted(set.intersection(*(set(r) for r in per_student.values())))
            scores = np.zeros((len(frames), len(names)))
            joint: dict[int, np.ndarray] = {}  # frame -> its ensemble label (labels != "best")
            for s in range(0, len(frames), batch_size):
                part = frames[s : s + batch_size]
                masks = [torch.from_numpy(np.stack([per_student[n][f].mask for f in part])
                                          .astype(np.float32))[:, None] for n in names]
                if model is None:
                    scores[s : s + len(part)] = agreement_scores(masks, ensemble).numpy()
                else:
                    images = torch.from_numpy(np.stack([per_student[names[0]][f].image
                                                        for f in part])).permute(0, 3, 1, 2)
                    for k, m in enumerate(masks):
                        scores[s : s + len(part), k] = score_masks(model, images, m, precision).numpy()
                scores[s : s + len(part)][empty_masks(masks)] = 0.0
                if labels != "best":
                    joint.update(zip(part, ensemble_labels(masks, labels, ensemble).numpy()))
            best, best_scores = best_per_frame(scores)
            kept = []
            for f, b, sc in zip(frames, best, best_scores):
                r = per_student[names[b]][f]
                r.score, r.generation = float(sc), int(generation)
                if labels != "best":
                    r.mask = joint[f]
                if support:
                    r.mask = label_support(r.mask)
                r.teacher = f"{scorer}:{names[b]}" if labels == "best" else f"{scorer}:{labels}"
                kept.append(r)
            info = {
                "scores": [float(s) for s in best_scores],
                "j": [_frame_j(r.mask, r.gt_mask) for r in kept],
                "chosen": [names[b] for b in best],
                "densities": [edge_density(r.image) for r in kept],
            }
            target.write_table(records_to_table(kept))
            (stats / f"{video}.json").write_json(info)
        if "densities" not in info:  # scored before strata existed: the rows of its file, in order
            info["densities"] = _file_densities(target)
        all_scores += info["scores"]
        all_densities += [float(x) for x in info["densities"]]
        all_j += [float(x) for x in info["j"]]
        for name in info["chosen"]:
            chosen[name] = chosen.get(name, 0) + 1
    log(f"rescore: {len(all_scores)} frames of {len(videos)} videos scored ({scorer}); "
        f"best masks from {chosen}")
    return {"scores": all_scores, "j": all_j, "densities": all_densities, "chosen": chosen, "videos": len(videos)}


def _file_densities(path: RunPath) -> list[float]:
    import pyarrow.parquet as pq

    from popdistill.data.schema import table_to_records

    return [edge_density(r.image) for r in table_to_records(pq.read_table(path.path, filesystem=path.fs))]


def kept_scores(scores, threshold: float) -> np.ndarray:
    """The selection rule: score >= ``threshold`` and > 0 (an empty mask scores 0: never kept)."""
    scores = np.asarray(scores, np.float64)
    return (scores >= threshold) & (scores > 0)


def selection_rule(scores, top: float, threshold: float | None, densities=None,
                   strata: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(stratum edges, thresholds) of the selection: a fixed ``threshold``, or the one keeping
    the ``top`` fraction of ``scores``, or with ``strata`` > 1 the top fraction of each
    edge-density stratum (``densities``: each frame's edge density;
    :func:`popdistill.teacher.selection.stratified_thresholds`)."""
    from popdistill.teacher.selection import ScorePool, stratified_thresholds

    scores = np.asarray(scores, np.float64)
    if threshold is not None:
        return np.zeros(0), np.array([float(threshold)])
    if strata > 1 and scores.size:
        return stratified_thresholds(scores, np.asarray(densities, np.float64), top, strata)
    return np.zeros(0), np.array([ScorePool(scores).threshold(top) if scores.size else 1.0])


def kept_by_rule(scores, densities, rule: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`kept_scores` under a :func:`selection_rule` (``densities`` may be None without
    strata)."""
    from popdistill.teacher.selection import stratified_keep

    scores = np.asarray(scores, np.float64)
    cuts, thresholds = rule
    values = np.zeros_like(scores) if densities is None or not cuts.size else np.asarray(densities, np.float64)
    return stratified_keep(scores, values, cuts, thresholds) & (scores > 0)


def select_scored(
    scored: RunPath, selected: RunPath, scores: list[float], top: float, threshold: float | None,
    densities: list[float] | None = None, strata: int = 1,
) -> float:
    """Write the frames of ``scored`` that :func:`kept_scores` keeps at the threshold
    (``threshold``, or the one keeping the ``top`` fraction of ``scores``; with ``strata`` > 1
    the one of the frame's edge-density stratum, ``densities`` being every frame's) to
    ``selected``; returns the threshold (the lowest stratum's with strata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from popdistill.teacher.selection_ray import stratified_rows

    cuts, thresholds = selection_rule(scores, top, threshold, densities, strata)
    selected.delete()
    for f in scored.files(".parquet"):
        table = pq.read_table(f, filesystem=scored.fs)
        values = table["score"].to_numpy(zero_copy_only=False).astype(np.float64)
        keep = stratified_rows(table, values, cuts.tolist(), thresholds.tolist()) & (values > 0)
        table = table.filter(pa.array(keep))
        if table.num_rows:
            (selected / f.rsplit("/", 1)[-1]).write_table(table)
    return float(np.min(thresholds))


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
