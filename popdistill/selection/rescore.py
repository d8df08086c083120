"""Generation >= 2 selection: every student's mask of every training frame is scored, each
frame keeps its best-scored mask, then the best frames are kept.

Two scorers (``SelectionConfig.scorer``):

* ``evalseg`` (the thesis): EvalSeg-Net's predicted quality of (image, mask).
* ``agreement``: EvalSeg-Net's own training target computed exactly — the cosine similarity
  of the mask to the Multi-Net product of all the students' masks of that frame. At
  generation >= 2 every candidate frame has every student's mask, so the target needs no
  network; on the embedded corpus it ranks masks by true J better than the trained net does
  (docs/experiments/).

Both measure agreement with ``SelectionConfig.ensemble``: the students' ``product`` (the thesis)
or its n-th root ``geomean``, which does not favour the most conservative student's masks
(docs/experiments/).

    rescore_predictions(stores, evalseg, scored)   one Parquet file per video: each frame's
                                                   best mask, ``score`` = its score

then :func:`popdistill.selection.select.select_scored` keeps the best frames. Scorers are a
:class:`~popdistill.registry.Registry` (``create_scorer``); what a kept frame's label is comes
from :mod:`popdistill.selection.labels`.

Rescoring is resumable per video. Only one video's frames are in memory at a time;
the per-frame scores (and J where there is ground truth) are returned for the statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from popdistill.choices import ENSEMBLES, LABEL_RULES
from popdistill.choices import SCORERS as SCORER_NAMES
from popdistill.registry import Registry
from popdistill.selection.labels import ensemble_labels, label_support
from popdistill.selection.scores import edge_density
from popdistill.storage import RunPath

__all__ = [
    "SCORERS",
    "register_scorer",
    "create_scorer",
    "list_scorers",
    "agreement_scores",
    "best_per_frame",
    "empty_masks",
    "rescore_predictions",
]

# A scorer: ``create_scorer(name, checkpoint=, device=, precision=, ensemble=)`` gives
# ``score(images, masks) -> frames x candidates`` (``images``: a function giving the batch's
# B x 3 x H x W uint8 images, called only by scorers that look at them).
Scorer = Callable[[Callable[[], Any], Sequence[Any]], np.ndarray]
SCORERS: Registry[Callable[..., Scorer]] = Registry("scorer", "mask scorer", builtin=__name__,
                                                    names=SCORER_NAMES)


def register_scorer(name_or_fn=None):
    """Decorator: a factory ``fn(checkpoint, device, precision, ensemble) -> scorer``."""
    return SCORERS.register(name_or_fn)


def create_scorer(name: str, **kwargs: Any) -> Scorer:
    return SCORERS.create(name, **kwargs)


def list_scorers(pattern: str = "*") -> list[str]:
    return SCORERS.names(pattern)


@register_scorer("evalseg")
def evalseg(checkpoint: str | None, device: Any, precision: str, ensemble: str) -> Scorer:
    """EvalSeg-Net's predicted quality of each (image, mask) pair (the thesis)."""
    from popdistill.students import load_checkpoint
    from popdistill.train.evalseg import score_masks

    if checkpoint is None:
        raise ValueError("scorer evalseg: an EvalSeg-Net checkpoint is needed")
    model = load_checkpoint(checkpoint, map_location=device)[0].eval()

    def score(images: Callable[[], Any], masks: Sequence[Any]) -> np.ndarray:
        batch = images()
        return np.stack([score_masks(model, batch, m, precision).numpy() for m in masks], axis=1)

    return score


@register_scorer("agreement")
def agreement(checkpoint: str | None, device: Any, precision: str, ensemble: str) -> Scorer:
    """EvalSeg-Net's training target computed exactly: each mask's agreement with the
    candidates' ``ensemble`` mask (:func:`agreement_scores`)."""
    return lambda images, masks: agreement_scores(masks, ensemble).numpy()


def best_per_frame(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the best student, its score) per frame for scores frames x students; ties go
    to the first student."""
    scores = np.asarray(scores, np.float64)
    best = np.argmax(scores, axis=1)
    return best, scores[np.arange(len(scores)), best]


def agreement_scores(masks: Sequence[Any], ensemble: str = ENSEMBLES[0]) -> Any:
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
    ensemble: str = ENSEMBLES[0],
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
    from popdistill.students.device import local_device, resolve_precision

    if labels not in LABEL_RULES:
        raise ValueError(f"labels: {labels!r} is not one of {', '.join(LABEL_RULES)}")
    device = local_device(gpu)
    precision = resolve_precision(precision, device)
    score = create_scorer(scorer, checkpoint=evalseg_checkpoint, device=device,
                          precision=precision, ensemble=ensemble)
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
                first = per_student[names[0]]
                images = lambda part=part, first=first: torch.from_numpy(np.stack(  # noqa: E731
                    [first[f].image for f in part])).permute(0, 3, 1, 2)
                scores[s : s + len(part)] = score(images, masks)
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
                if r.density is None:  # a store written before the actors stored it
                    r.density = edge_density(r.image)
                kept.append(r)
            info = {
                "scores": [float(s) for s in best_scores],
                "j": [_frame_j(r.mask, r.gt_mask) for r in kept],
                "chosen": [names[b] for b in best],
                "densities": [r.density for r in kept],
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


