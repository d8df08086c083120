"""Segmentation metrics (PAPERS.md section 4) as pure numpy functions, plus a streaming evaluator.

Per frame, the soft mask is first resized to the ground-truth size (:func:`resize_mask`) and:

- ``P``: per-pixel accuracy of the mask binarised at ``soft >= threshold`` (0.5 by default).
- ``J``: foreground IoU (Jaccard) of that binary mask.
- ``CorLoc``: 1 when the box of the soft mask (:func:`~popdistill.evaluate.boxes.mask_to_box`)
  has IoU >= 0.5 with *any* ground-truth box. Only frames with at least one ground-truth box
  count; a mask with no foreground has no box and is a miss.
- ``F_max``: the saliency convention. For each frame, precision and recall at 256 thresholds
  ``k / 255`` (``k = 0..255``) on the mask quantised to 8 bits (the store's precision),
  foreground = quantised value >= k; the precision and recall curves are averaged over frames;
  ``F_beta = (1 + b2) P R / (b2 P + R)`` with ``b2 = 0.3`` is computed from the averaged curves
  and its maximum over thresholds is reported (with the threshold that reaches it).
- ``F_adaptive``: per frame, the mask binarised at ``min(2 * mean(soft), 1)`` (an all-zero
  mask gives an empty prediction), its F_beta; averaged over frames.
- ``MAE``: mean absolute difference between the soft mask and the binary ground truth.

Empty masks: J, precision, recall and F score 1 when the prediction and the ground truth are
both empty and 0 when exactly one of them is (a ratio whose denominator is zero is 0, unless
both sides are empty). P and MAE need no special case.

:class:`Evaluator` keeps only running sums per video, so it can score millions of frames and
be serialised (``to_dict``/``from_dict``) and merged across Ray Data batches. Overall numbers
are means over frames; ``mean_over_videos`` averages the per-video numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from popdistill.config import choice
from popdistill.data.schema import Skipped
from popdistill.errors import UserError
from popdistill.evaluate.boxes import BOX_MODES, mask_to_box, max_box_iou

__all__ = [
    "BETA2",
    "N_THRESHOLDS",
    "EvalConfig",
    "Evaluator",
    "resize_mask",
    "binarize",
    "pixel_accuracy",
    "jaccard",
    "mae",
    "precision_recall",
    "precision_recall_curve",
    "f_beta",
    "adaptive_threshold",
    "adaptive_f_measure",
    "corloc_hit",
]

BETA2 = 0.3
N_THRESHOLDS = 256
CORLOC_IOU = 0.5


# -- per-frame functions -----------------------------------------------------------------


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a soft mask to ``shape`` (H, W), float32 clipped to [0, 1].

    Half-pixel-centred sampling (``torch.nn.functional.interpolate``, ``align_corners=False``,
    the same as ``skimage.transform.resize(order=1)``); anti-aliased (as PIL) when shrinking.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"a soft mask must be 2-D, got shape {mask.shape}")
    shape = (int(shape[0]), int(shape[1]))
    if mask.shape == shape:
        return np.clip(mask, 0.0, 1.0)
    import torch
    import torch.nn.functional as F

    shrink = shape[0] < mask.shape[0] or shape[1] < mask.shape[1]
    out = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(mask))[None, None],
        size=shape,
        mode="bilinear",
        align_corners=False,
        antialias=shrink,
    )[0, 0].numpy()
    return np.clip(out, 0.0, 1.0)


def binarize(soft: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground = ``soft >= threshold``."""
    return np.asarray(soft) >= threshold


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den > 0:
        return float(num) / float(den)
    return 1.0 if both_empty else 0.0


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of pixels where the binary prediction equals the ground truth."""
    return float(np.mean(np.asarray(pred, bool) == np.asarray(gt, bool)))


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground IoU; 1 when both masks are empty, 0 when only one is."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    inter = np.count_nonzero(pred & gt)
    union = np.count_nonzero(pred | gt)
    return _ratio(inter, union, both_empty=True)


def mae(soft: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between the soft mask and the binary ground truth."""
    return float(np.mean(np.abs(np.asarray(soft, np.float32) - np.asarray(gt, np.float32))))


def precision_recall(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a binary prediction (empty-mask rules as in the module doc)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    tp = np.count_nonzero(pred & gt)
    n_pred, n_gt = np.count_nonzero(pred), np.count_nonzero(gt)
    both_empty = n_pred == 0 and n_gt == 0
    return _ratio(tp, n_pred, both_empty), _ratio(tp, n_gt, both_empty)


def precision_recall_curve(soft: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at thresholds ``k / 255``, ``k = 0..255`` (arrays of 256).

    The mask is quantised to 8 bits (``round(soft * 255)``) and foreground at threshold k is
    ``quantised >= k``, computed from one histogram of foreground and background pixels.
    """
    gt = np.asarray(gt, bool)
    q = np.rint(np.clip(np.asarray(soft, np.float32), 0, 1) * 255).astype(np.int64)
    hist = np.bincount((q + N_THRESHOLDS * gt).ravel(), minlength=2 * N_THRESHOLDS)
    bg_hist, fg_hist = hist[:N_THRESHOLDS], hist[N_THRESHOLDS:]
    tp = np.cumsum(fg_hist[::-1])[::-1].astype(np.float64)  # pixels with q >= k that are gt
    fp = np.cumsum(bg_hist[::-1])[::-1].astype(np.float64)
    n_gt = float(fg_hist.sum())
    n_pred = tp + fp
    both_empty = (n_pred == 0) & (n_gt == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), both_empty.astype(np.float64))
        recall = tp / n_gt if n_gt > 0 else both_empty.astype(np.float64)
    return precision, recall


def f_beta(precision: np.ndarray | float, recall: np.ndarray | float, beta2: float = BETA2):
    """``(1 + b2) P R / (b2 P + R)``, 0 where ``P = R = 0``; works on scalars and arrays."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    den = beta2 * p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(den > 0, (1 + beta2) * p * r / np.where(den > 0, den, 1.0), 0.0)
    return float(f) if f.ndim == 0 else f


def adaptive_threshold(soft: np.ndarray) -> float:
    """``min(2 * mean(soft), 1)``."""
    return float(min(2.0 * float(np.mean(soft)), 1.0))


def adaptive_f_measure(soft: np.ndarray, gt: np.ndarray, beta2: float = BETA2) -> float:
    """F_beta of the mask binarised at :func:`adaptive_threshold` (all-zero mask -> empty)."""
    soft = np.asarray(soft, np.float32)
    pred = (soft >= adaptive_threshold(soft)) & (soft > 0)
    return f_beta(*precision_recall(pred, gt), beta2=beta2)


def corloc_hit(
    soft: np.ndarray, gt_boxes: np.ndarray, threshold: float = 0.5, box_mode: str = "largest"
) -> bool:
    """True when the box of ``soft`` has IoU >= 0.5 with any ground-truth box."""
    box = mask_to_box(soft, threshold, box_mode)
    return max_box_iou(box, gt_boxes) >= CORLOC_IOU


# -- streaming evaluator -----------------------------------------------------------------


@dataclass
class EvalConfig:
    """Evaluation settings: binarisation threshold for P/J/boxes and the box rule for CorLoc."""

    threshold: float = 0.5  # a soft mask is foreground where >= this (P, J and boxes)
    # CorLoc's box: around the largest 8-connected component (largest) or all foreground (all)
    box_mode: str = choice(BOX_MODES[0], BOX_MODES)
    beta2: float = BETA2  # the F-measure's beta squared (0.3, the saliency literature's)

    def validate(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"threshold: {self.threshold} is not in [0, 1]")
        if self.box_mode not in BOX_MODES:
            raise UserError(f"box_mode: {self.box_mode!r} is not one of {', '.join(BOX_MODES)}")
        if self.beta2 <= 0:
            raise UserError(f"beta2: {self.beta2} must be positive")


_SCALARS = ("n_mask", "acc", "jac", "mae", "f_adapt", "n_box", "hits", "n_nogt")


class _Sums:
    """Running sums for one video."""

    def __init__(self) -> None:
        for name in _SCALARS:
            setattr(self, name, 0.0)
        self.prec = np.zeros(N_THRESHOLDS)
        self.rec = np.zeros(N_THRESHOLDS)

    def add(self, other: _Sums) -> None:
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.prec += other.prec
        self.rec += other.rec

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in _SCALARS}
        d.update(prec=self.prec.tolist(), rec=self.rec.tolist())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> _Sums:
        s = cls()
        for name in _SCALARS:
            setattr(s, name, float(d[name]))
        s.prec = np.asarray(d["prec"], np.float64)
        s.rec = np.asarray(d["rec"], np.float64)
        return s

    def metrics(self, beta2: float) -> dict:
        n, nb = self.n_mask, self.n_box
        out: dict = dict.fromkeys(
            ("P", "J", "CorLoc", "F_max", "F_max_threshold", "F_adaptive", "MAE")
        )
        if n > 0:
            curve = f_beta(self.prec / n, self.rec / n, beta2)
            best = int(np.argmax(curve))
            out.update(
                P=self.acc / n,
                J=self.jac / n,
                F_max=float(curve[best]),
                F_max_threshold=best / (N_THRESHOLDS - 1),
                F_adaptive=self.f_adapt / n,
                MAE=self.mae / n,
            )
        if nb > 0:
            out["CorLoc"] = self.hits / nb
        out.update(frames=int(n), frames_with_boxes=int(nb), frames_without_gt=int(self.n_nogt))
        return out


class Evaluator:
    """Streaming accumulator: ``add`` frames one by one, read ``results()``; mergeable.

    Holds only per-video running sums (a few kB per video), never the masks.
    """

    def __init__(self, config: EvalConfig | None = None, **overrides) -> None:
        cfg = config or EvalConfig()
        if overrides:
            cfg = EvalConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.videos: dict[str, _Sums] = {}
        self.skipped: list[Skipped] = []

    def skip(self, path: str, reason: str) -> None:
        """Record an input that could not be scored (e.g. no mask for a frame)."""
        self.skipped.append(Skipped(str(path), reason))

    def add(
        self,
        video: str,
        soft_mask: np.ndarray | None,
        gt_mask: np.ndarray | None = None,
        gt_boxes: np.ndarray | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> dict:
        """Score one frame and add it to the sums; returns that frame's scores.

        ``soft_mask`` (any size) is resized to ``gt_mask``'s shape, or to ``frame_size``
        (H, W) when there are only boxes. A frame with neither ground truth is only counted
        (``frames_without_gt``). An empty ``gt_boxes`` array means no box: no CorLoc.
        """
        cfg = self.config
        sums = self.videos.setdefault(str(video), _Sums())
        has_boxes = gt_boxes is not None and np.asarray(gt_boxes).size > 0
        if gt_mask is None and not has_boxes:
            sums.n_nogt += 1
            return {}
        if soft_mask is None:
            raise ValueError("soft_mask is required for a frame with ground truth")
        if gt_mask is not None:
            frame_size = np.asarray(gt_mask).shape[:2]
        elif frame_size is None:
            raise ValueError("frame_size is required when a frame has boxes but no gt_mask")
        soft = resize_mask(soft_mask, frame_size)
        if not np.isfinite(soft).all():
            raise ValueError(f"soft mask of video {video!r} has non-finite values")
        scores: dict = {}
        if gt_mask is not None:
            gt = np.asarray(gt_mask, bool)
            pred = binarize(soft, cfg.threshold)
            prec, rec = precision_recall_curve(soft, gt)
            scores.update(
                P=pixel_accuracy(pred, gt),
                J=jaccard(pred, gt),
                MAE=mae(soft, gt),
                F_adaptive=adaptive_f_measure(soft, gt, cfg.beta2),
            )
            sums.n_mask += 1
            sums.acc += scores["P"]
            sums.jac += scores["J"]
            sums.mae += scores["MAE"]
            sums.f_adapt += scores["F_adaptive"]
            sums.prec += prec
            sums.rec += rec
        if has_boxes:
            hit = corloc_hit(soft, np.asarray(gt_boxes), cfg.threshold, cfg.box_mode)
            scores["CorLoc"] = float(hit)
            sums.n_box += 1
            sums.hits += float(hit)
        return scores

    # -- combining and serialising ---------------------------------------------------------
    def merge(self, other: Evaluator) -> Evaluator:
        """Add another evaluator's sums (same config) into this one; returns ``self``."""
        if asdict(other.config) != asdict(self.config):
            raise ValueError(
                f"cannot merge evaluators with different configs: {asdict(self.config)} "
                f"vs {asdict(other.config)}"
            )
        for video, sums in other.videos.items():
            self.videos.setdefault(video, _Sums()).add(sums)
        self.skipped.extend(other.skipped)
        return self

    def to_dict(self) -> dict:
        """Plain values only (JSON- and Ray-friendly)."""
        return {
            "config": asdict(self.config),
            "videos": {v: s.to_dict() for v, s in self.videos.items()},
            "skipped": [s.to_dict() for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Evaluator:
        ev = cls(EvalConfig(**d["config"]))
        ev.videos = {v: _Sums.from_dict(s) for v, s in d["videos"].items()}
        ev.skipped = [Skipped(s["path"], s["reason"]) for s in d.get("skipped", [])]
        return ev

    # -- results -----------------------------------------------------------------------------
    def overall(self) -> dict:
        """Metrics over all frames of all videos (means over frames)."""
        total = _Sums()
        for sums in self.videos.values():
            total.add(sums)
        out = total.metrics(self.config.beta2)
        out["videos"] = len(self.videos)
        return out

    def per_video(self) -> dict[str, dict]:
        return {v: s.metrics(self.config.beta2) for v, s in sorted(self.videos.items())}

    def mean_over_videos(self) -> dict:
        """Each metric averaged over the videos where it is defined."""
        per_video = list(self.per_video().values())
        out: dict = {}
        for key in ("P", "J", "CorLoc", "F_max", "F_adaptive", "MAE"):
            values = [m[key] for m in per_video if m[key] is not None]
            out[key] = float(np.mean(values)) if values else None
        out["videos_with_masks"] = sum(m["frames"] > 0 for m in per_video)
        out["videos_with_boxes"] = sum(m["frames_with_boxes"] > 0 for m in per_video)
        return out

    def results(self) -> dict:
        return {
            "overall": self.overall(),
            "mean_over_videos": self.mean_over_videos(),
            "videos": self.per_video(),
        }
