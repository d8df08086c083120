"""Generation-1 selection (module C): score soft masks, keep the top fraction of a corpus.

The score of a soft mask is the mean of its non-zero values (ICCV 2017; PAPERS.md section 2);
an all-zero mask scores 0. The corpus keeps the masks whose score reaches the threshold of the
top ``fraction`` (10 % in the ICCV 2017 tables). Per-batch scores are computed where the masks
are (e.g. Ray workers) and merged in a ``ScorePool``, which holds the scalar scores only and
gives the exact threshold.

The frames the teacher is surest of have plain backgrounds (its motion cue is cleanest there),
so a corpus-wide top fraction under-represents cluttered frames, and students trained on it take
clutter for objects. Stratified selection (``strata`` > 1) keeps the top fraction within each
of ``strata`` equal-count bins of a frame's edge density (the mean Sobel magnitude of its grey
image, no labels needed): every kind of background is covered, each by its best masks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["mask_score", "scores_for_batch", "top_fraction_threshold", "keep_mask", "ScorePool",
           "edge_density", "edge_densities", "strata_edges", "stratum_of", "stratified_thresholds", "stratified_keep"]


def mask_score(mask: np.ndarray) -> float:
    """Mean of the non-zero values of one soft mask; 0.0 for an all-zero mask."""
    return float(scores_for_batch(np.asarray(mask)[None])[0])


def scores_for_batch(masks: np.ndarray) -> np.ndarray:
    """Scores (float64, one per mask) of a (B, ...) batch of soft masks: sums in float64,
    read from the masks as they are (no float64 copy of a float32 stack)."""
    masks = np.asarray(masks)
    flat = masks.reshape(len(masks), -1)
    count = np.count_nonzero(flat, axis=1)
    total = flat.sum(axis=1, dtype=np.float64)
    return np.divide(total, count, out=np.zeros(len(flat)), where=count > 0)


def top_fraction_threshold(scores: np.ndarray | Iterable[float], fraction: float) -> float:
    """The score threshold that keeps the top ``fraction`` of ``scores`` (keep ``score >= t``).

    The number kept is ``ceil(fraction * n)`` (``fraction * n`` rounded to 9 decimals first,
    so that 0.1 of 100 keeps exactly 10); the threshold is that many-th largest score. Scores
    tied with the threshold are all kept, so ties can keep more than the fraction. A fraction
    of 0 (or no scores) gives ``inf`` (keep nothing); 1 gives the minimum (keep all).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    values = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores)
    values = values.astype(np.float64).ravel()
    n_keep = math.ceil(round(fraction * values.size, 9))
    if n_keep == 0:
        return math.inf
    return float(np.partition(values, values.size - n_keep)[values.size - n_keep])


def keep_mask(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the scores that pass ``threshold`` (``score >= threshold``)."""
    return np.asarray(scores) >= threshold


class ScorePool:
    """Mergeable collection of scalar scores for an exact corpus-wide threshold.

    Workers fill a pool each (``add``) and the driver merges them (``merge`` or ``sum``
    of pools); the result does not depend on how the scores were split or ordered.
    A million scores take 8 MB.
    """

    def __init__(self, scores: np.ndarray | Iterable[float] = ()):
        self._parts: list[np.ndarray] = []
        self.add(scores)

    def add(self, scores: np.ndarray | Iterable[float]) -> ScorePool:
        part = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores)
        if part.size:
            self._parts.append(part.astype(np.float64).ravel())
        return self

    def merge(self, other: ScorePool) -> ScorePool:
        """A new pool with the scores of both."""
        return ScorePool(np.concatenate([self.scores(), other.scores()]))

    def __add__(self, other: ScorePool) -> ScorePool:
        return self.merge(other)

    def __radd__(self, other: object) -> ScorePool:  # lets sum(pools) start from 0
        return self if other == 0 else NotImplemented

    def __len__(self) -> int:
        return sum(p.size for p in self._parts)

    def scores(self) -> np.ndarray:
        """All scores, in the order added."""
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0] if self._parts else np.zeros(0)

    def threshold(self, fraction: float) -> float:
        """``top_fraction_threshold`` of all scores in the pool."""
        return top_fraction_threshold(self.scores(), fraction)


def edge_density(image: np.ndarray) -> float:
    """Mean Sobel magnitude of an RGB (H x W x 3, uint8 or float in [0, 1]) or grey image: how
    cluttered a frame is, without labels (:func:`edge_densities` of a one-frame stack)."""
    img = np.asarray(image)
    return float(edge_densities(img[None])[0])


# rgb2gray's luminance weights (scikit-image, ITU-R 709)
_GREY = np.array([0.2125, 0.7154, 0.0721], np.float32)


def edge_densities(frames: np.ndarray, group: int = 4) -> np.ndarray:
    """:func:`edge_density` of each frame of a stack (T x H x W x 3 RGB, or T x H x W grey;
    uint8, or float in [0, 1]): ``skimage.filters.sobel(skimage.color.rgb2gray(frame)).mean()``.

    Computed as scikit-image defines it (3 x 3 Sobel kernels with [1, 2, 1] / 4 smoothing,
    edges extended by reflection, magnitude sqrt((h^2 + v^2) / 2)) but in float32, ``group``
    frames at once, each step one pass over a flat buffer: the grey frames go into a padded
    buffer, and a neighbour along a row is the next element, one down a column the element a
    padded row later, so every filter is a sum of the buffer and a shifted view of it (values
    that straddle two rows fall in the padding and are never read). The [1, 2, 1] smoothing is
    [1, 1] twice; each frame's magnitudes are summed in float32 (pairwise). Agrees with
    scikit-image to 1e-6 (tests/selection/test_scores.py). The teacher's actors compute it for
    every frame they mask, so its cost is the pipeline's (docs/benchmarks.md).
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(f"edge_densities: expected T x H x W x 3 or T x H x W frames, got shape {frames.shape}")
    scale = np.float32(1 / 255 if frames.dtype == np.uint8 else 1)
    t, height, width = frames.shape[:3]
    g = max(1, min(group, t))
    row = width + 2  # a padded row; the pixel (y, x) of a frame is at (y + 1) * row + x + 1
    size = (height + 2) * row
    padded = np.empty((g, height + 2, row), np.float32)
    pairs, smooth, h, v = (np.empty(g * size, np.float32) for _ in range(4))
    out = np.empty(t)
    for i in range(0, t, g):
        part = frames[i:i + g]
        n = len(part)
        p = padded[:n]
        if part.ndim == 4:
            np.matmul(part, _GREY * scale, out=p[:, 1:-1, 1:-1], casting="unsafe")
        else:
            np.multiply(part, scale, out=p[:, 1:-1, 1:-1], casting="unsafe")
        p[:, 0, 1:-1] = p[:, 1, 1:-1]  # edges extended
        p[:, -1, 1:-1] = p[:, -2, 1:-1]
        p[:, :, 0] = p[:, :, 1]
        p[:, :, -1] = p[:, :, -2]
        flat = p.reshape(-1)
        m = n * size - 2 * row - 2  # h[k], v[k]: the pixel at k + row + 1
        # [1, 2, 1] along the rows, then [1, 0, -1] down the columns: horizontal edges
        np.add(flat[:-1], flat[1:], out=pairs[:n * size - 1])
        np.add(pairs[:n * size - 2], pairs[1:n * size - 1], out=smooth[:n * size - 2])
        np.subtract(smooth[:m], smooth[2 * row:2 * row + m], out=h[:m])
        # [1, 2, 1] down the columns, then [1, 0, -1] along the rows: vertical edges
        np.add(flat[:-row], flat[row:], out=pairs[:n * size - row])
        np.add(pairs[:n * size - 2 * row], pairs[row:n * size - row], out=smooth[:n * size - 2 * row])
        np.subtract(smooth[:m], smooth[2:m + 2], out=v[:m])
        hm, vm = h[:m], v[:m]
        np.square(hm, out=hm)
        np.square(vm, out=vm)
        hm += vm
        np.sqrt(hm, out=hm)
        pixels = h[:n * size].reshape(n, height + 2, row)[:, :height, :width]
        out[i:i + n] = pixels.sum(axis=(1, 2))
    return out / (height * width * 4 * np.sqrt(2))


def strata_edges(values: np.ndarray, strata: int) -> np.ndarray:
    """The ``strata - 1`` inner quantiles of ``values`` that cut them into equal-count strata."""
    if strata < 1:
        raise ValueError(f"strata must be >= 1, got {strata}")
    values = np.asarray(values, np.float64).ravel()
    if strata == 1 or values.size == 0:
        return np.zeros(0)
    return np.quantile(values, np.arange(1, strata) / strata)


def stratum_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's stratum (0 = lowest) under ``strata_edges``."""
    return np.searchsorted(np.asarray(edges), np.asarray(values, np.float64), side="right")


def stratified_thresholds(scores: np.ndarray, values: np.ndarray, fraction: float,
                          strata: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges, thresholds): the strata of ``values`` and, per stratum, the score threshold that
    keeps its top ``fraction`` (``inf`` for an empty stratum). One stratum is the plain
    corpus-wide ``top_fraction_threshold``."""
    scores = np.asarray(scores, np.float64).ravel()
    values = np.asarray(values, np.float64).ravel()
    if scores.shape != values.shape:
        raise ValueError(f"{scores.size} scores but {values.size} stratum values")
    edges = strata_edges(values, strata)
    which = stratum_of(values, edges)
    thresholds = np.array([top_fraction_threshold(scores[which == k], fraction) for k in range(strata)])
    return edges, thresholds


def stratified_keep(scores: np.ndarray, values: np.ndarray, edges: np.ndarray,
                    thresholds: np.ndarray) -> np.ndarray:
    """Boolean mask of the frames whose score passes their stratum's threshold."""
    return np.asarray(scores, np.float64) >= np.asarray(thresholds)[stratum_of(values, edges)]
