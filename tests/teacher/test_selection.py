"""Generation-1 selection: mask scores, top-fraction thresholds, mergeable score pools."""

from __future__ import annotations

import math

import numpy as np
import pytest

from popdistill.teacher.selection import (
    ScorePool,
    keep_mask,
    mask_score,
    scores_for_batch,
    top_fraction_threshold,
)


def test_mask_score_hand_computed():
    mask = np.array([[0.0, 0.5], [1.0, 0.0], [0.25, 0.0]], np.float32)
    assert mask_score(mask) == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    assert mask_score(np.zeros((4, 4))) == 0.0
    assert mask_score(np.full((2, 2), 0.2)) == pytest.approx(0.2)


def test_scores_for_batch_matches_per_mask():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 8, 8)) * (rng.random((6, 8, 8)) > 0.7)
    masks[2] = 0.0
    scores = scores_for_batch(masks)
    assert scores.shape == (6,)
    expected = [m[m != 0].mean() if np.any(m) else 0.0 for m in masks]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    assert scores[2] == 0.0


def test_top_ten_percent_of_0_to_99():
    scores = np.arange(100, dtype=np.float64)
    rng = np.random.default_rng(1)
    rng.shuffle(scores)
    t = top_fraction_threshold(scores, 0.1)
    assert t == 90.0
    assert sorted(scores[keep_mask(scores, t)]) == list(range(90, 100))
    assert top_fraction_threshold(scores, 0.2) == 80.0
    assert top_fraction_threshold(scores, 0.105) == 89.0  # ceil(10.5) = 11 kept
    assert top_fraction_threshold(scores, 1.0) == 0.0
    assert top_fraction_threshold(scores, 0.0) == math.inf


def test_ties_keep_every_tied_score():
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    t = top_fraction_threshold(scores, 0.4)  # 2 wanted: 0.9 and one 0.5
    assert t == 0.5
    assert keep_mask(scores, t).sum() == 4


def test_fraction_outside_unit_interval_fails():
    with pytest.raises(ValueError):
        top_fraction_threshold([0.1, 0.2], 1.5)


def test_score_pool_merge_is_exact_and_order_free():
    rng = np.random.default_rng(2)
    scores = rng.random(1001)
    parts = np.split(rng.permutation(scores), [10, 400, 401, 900])
    pools = [ScorePool(p) for p in parts]
    merged = sum(pools)
    assert len(merged) == 1001
    for fraction in (0.1, 0.15, 0.2):
        assert merged.threshold(fraction) == top_fraction_threshold(scores, fraction)
    incremental = ScorePool()
    for p in parts:
        incremental.add(p)
    assert incremental.threshold(0.1) == merged.threshold(0.1)
    assert (pools[0] + pools[1]).threshold(1.0) == min(parts[0].min(), parts[1].min())
    assert ScorePool().threshold(0.1) == math.inf
