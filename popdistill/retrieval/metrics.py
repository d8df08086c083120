"""Retrieval metrics from a captions x videos similarity matrix (TeachText / CE protocol).

Every caption is its own text->video query; its relevant item is the video it describes. For
video->text each video is a query over all captions, and its rank is the best rank among its
own captions. Ranks are 1-based; a tie between the relevant item and others gets the average
of the tied positions (so a relevant item tied with one other at the top has rank 1.5). R@k is
the percentage of queries whose rank is <= k, so a tie at the top does not count as R@1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "t2v_ranks",
    "v2t_ranks",
    "ranks_to_metrics",
    "retrieval_metrics",
    "geometric_mean",
    "mean_std",
]

_CHUNK_ELEMENTS = 1 << 24  # bound the boolean temporaries to ~16 M entries


def _check(sims: np.ndarray, caption_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sims = np.asarray(sims)
    caption_video = np.asarray(caption_video)
    if sims.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D (captions x videos), got {sims.shape}")
    if caption_video.shape != (sims.shape[0],):
        raise ValueError(
            f"caption_video must have one entry per caption ({sims.shape[0]}), "
            f"got shape {caption_video.shape}"
        )
    if not np.issubdtype(caption_video.dtype, np.integer):
        raise ValueError("caption_video must hold integer video indices")
    if caption_video.size and (caption_video.min() < 0 or caption_video.max() >= sims.shape[1]):
        raise ValueError(f"caption_video holds indices outside [0, {sims.shape[1]})")
    if np.isnan(sims).any():
        raise ValueError("similarity matrix contains NaN")
    return sims, caption_video


def _tied_rank(block: np.ndarray, target: np.ndarray, axis: int) -> np.ndarray:
    """1-based rank of ``target`` within ``block`` along ``axis``, ties averaged."""
    greater = (block > target).sum(axis=axis)
    equal = (block == target).sum(axis=axis)  # includes the target itself
    return greater + (equal + 1) / 2.0


def t2v_ranks(sims: np.ndarray, caption_video: np.ndarray) -> np.ndarray:
    """Rank (1-based, ties averaged) of each caption's video among all videos."""
    sims, caption_video = _check(sims, caption_video)
    num_captions, num_videos = sims.shape
    ranks = np.empty(num_captions, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(num_videos, 1))
    for start in range(0, num_captions, step):
        rows = slice(start, start + step)
        block = sims[rows]
        gt = block[np.arange(block.shape[0]), caption_video[rows]][:, None]
        ranks[rows] = _tied_rank(block, gt, axis=1)
    return ranks


def v2t_ranks(sims: np.ndarray, caption_video: np.ndarray) -> np.ndarray:
    """Per video, the best rank (1-based, ties averaged) of its captions among all captions.

    Videos with no caption have no relevant item: their entry is NaN.
    """
    sims, caption_video = _check(sims, caption_video)
    num_captions, num_videos = sims.shape
    best = np.full(num_videos, -np.inf)
    np.maximum.at(best, caption_video, sims[np.arange(num_captions), caption_video])
    has_caption = np.bincount(caption_video, minlength=num_videos) > 0
    ranks = np.empty(num_videos, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(num_captions, 1))
    for start in range(0, num_videos, step):
        cols = slice(start, start + step)
        ranks[cols] = _tied_rank(sims[:, cols], best[None, cols], axis=0)
    ranks[~has_caption] = np.nan
    return ranks


def geometric_mean(r1: float, r5: float, r10: float) -> float:
    """Geometric mean of R@1, R@5 and R@10 (the TeachText summary number)."""
    return float(np.cbrt(r1 * r5 * r10))


def ranks_to_metrics(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (%), median and mean rank and their geometric mean; NaN ranks are skipped."""
    ranks = np.asarray(ranks, dtype=np.float64)
    ranks = ranks[~np.isnan(ranks)]
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    out = {f"R{k}": float(100.0 * np.mean(ranks <= k)) for k in (1, 5, 10)}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    out["GeoMean"] = geometric_mean(out["R1"], out["R5"], out["R10"])
    out["num_queries"] = int(ranks.size)
    return out


def retrieval_metrics(sims: np.ndarray, caption_video: np.ndarray) -> dict[str, dict[str, float]]:
    """Both directions: ``{"t2v": {...}, "v2t": {...}}`` with the keys of ``ranks_to_metrics``."""
    return {
        "t2v": ranks_to_metrics(t2v_ranks(sims, caption_video)),
        "v2t": ranks_to_metrics(v2t_ranks(sims, caption_video)),
    }


def mean_std(runs: Sequence[Mapping], ddof: int = 0) -> dict:
    """Mean and standard deviation across runs (e.g. seeds) of (nested) metric dicts.

    Every leaf number becomes ``(mean, std)``; ``ddof=0`` is numpy's population std.
    """
    if not runs:
        raise ValueError("mean_std needs at least one run")
    keys = list(runs[0])
    for i, run in enumerate(runs):
        if list(run) != keys:
            raise ValueError(f"run {i} has metrics {sorted(run)}, expected {sorted(keys)}")
    out: dict = {}
    for key in keys:
        values = [run[key] for run in runs]
        if isinstance(values[0], Mapping):
            out[key] = mean_std(values, ddof=ddof)
        else:
            arr = np.asarray(values, dtype=np.float64)
            std = float(arr.std(ddof=ddof)) if arr.size > ddof else float("nan")
            out[key] = (float(arr.mean()), std)
    return out
