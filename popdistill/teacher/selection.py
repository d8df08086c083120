"""Generation-1 selection (module C): score soft masks, keep the top fraction of a corpus.

The score of a soft mask is the mean of its non-zero values (ICCV 2017; PAPERS.md section 2);
an all-zero mask scores 0. The corpus keeps the masks whose score reaches the threshold of the
top ``fraction`` (10 % in the ICCV 2017 tables). Per-batch scores are computed where the masks
are (e.g. Ray workers) and merged in a ``ScorePool``, which holds the scalar scores only and
gives the exact threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["mask_score", "scores_for_batch", "top_fraction_threshold", "keep_mask", "ScorePool"]


def mask_score(mask: np.ndarray) -> float:
    """Mean of the non-zero values of one soft mask; 0.0 for an all-zero mask."""
    return float(scores_for_batch(np.asarray(mask)[None])[0])


def scores_for_batch(masks: np.ndarray) -> np.ndarray:
    """Scores (float64, one per mask) of a (B, ...) batch of soft masks."""
    flat = np.asarray(masks, dtype=np.float64).reshape(len(masks), -1)
    count = np.count_nonzero(flat, axis=1)
    total = flat.sum(axis=1)
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
