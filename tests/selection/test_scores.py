"""Generation-1 selection: mask scores, top-fraction thresholds, mergeable score pools,
edge-density strata."""

from __future__ import annotations

import math

import numpy as np
import pytest

from popdistill.selection.scores import (
    ScorePool,
    edge_densities,
    edge_density,
    keep_mask,
    mask_score,
    scores_for_batch,
    strata_edges,
    stratified_keep,
    stratified_thresholds,
    stratum_of,
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


def test_scores_of_float32_masks_are_summed_in_float64():
    """The masks are read as they are (no float64 copy), but summed in float64: a 128 px
    float32 stack scores as its float64 copy does (a float32 sum misses the tolerance by far)."""
    rng = np.random.default_rng(3)
    masks = (rng.random((4, 128, 128)) * (rng.random((4, 128, 128)) > 0.5)).astype(np.float32)
    masks[1] = np.float32(0.1) + np.float32(1e-4) * (np.arange(128 * 128) % 7).reshape(128, 128)
    np.testing.assert_array_equal(scores_for_batch(masks), scores_for_batch(masks.astype(np.float64)))
    exact = [float(np.sum(m.astype(np.float64)) / np.count_nonzero(m)) for m in masks]
    np.testing.assert_allclose(scores_for_batch(masks), exact, rtol=1e-13)



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


def test_edge_density_is_zero_on_flat_images_and_grows_with_clutter():
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert edge_density(flat) == 0.0
    one_edge = flat.copy()
    one_edge[:, 16:] = 255
    stripes = flat.copy()
    stripes[:, ::4] = 255
    assert 0.0 < edge_density(one_edge) < edge_density(stripes)
    # An RGB grey image and its grey channel (uint8 or float in [0, 1]) measure the same.
    assert edge_density(stripes[..., 0]) == pytest.approx(edge_density(stripes), rel=1e-3)
    assert edge_density(stripes[..., 0] / 255.0) == pytest.approx(edge_density(stripes[..., 0]))


@pytest.mark.parametrize("shape", [(5, 37, 53, 3), (3, 16, 16), (11, 128, 128, 3)])
def test_edge_densities_are_scikit_images_sobel_of_the_grey_frame(shape):
    """The chunk-at-once float32 computation against its definition, frame by frame in
    scikit-image: uint8 and float frames, RGB and grey, a stack that is not a multiple of the
    group."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    frames = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    frames[0] = 7  # a flat frame has no edges
    expected = np.array([sobel(rgb2gray(f) if f.ndim == 3 else f / 255.0).mean() for f in frames])
    assert expected[0] == 0.0
    np.testing.assert_allclose(edge_densities(frames), expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(edge_densities(frames / 255.0), expected, rtol=1e-6, atol=1e-9)
    assert [edge_density(f) for f in frames[:2]] == edge_densities(frames[:2]).tolist()
    with pytest.raises(ValueError, match="T x H x W"):
        edge_densities(frames[0, ..., 0])


def test_strata_cut_values_into_equal_counts():
    values = np.arange(12.0)
    edges = strata_edges(values, 3)
    assert np.bincount(stratum_of(values, edges)).tolist() == [4, 4, 4]
    assert strata_edges(values, 1).size == 0 and (stratum_of(values, strata_edges(values, 1)) == 0).all()
    with pytest.raises(ValueError):
        strata_edges(values, 0)


def test_stratified_selection_covers_every_stratum():
    # Plain frames (low edge density) score high, cluttered ones low, as the teacher's do: the
    # corpus-wide top quarter is all plain; the stratified one takes the best quarter of each.
    values = np.repeat([0.01, 0.02, 0.05, 0.08], 8) + np.tile(np.arange(8) * 1e-4, 4)
    rng = np.random.default_rng(3)
    scores = np.concatenate([0.9 - 0.1 * k + 0.01 * rng.permutation(8) for k in range(4)])
    corpus = keep_mask(scores, top_fraction_threshold(scores, 0.25))
    assert set(np.flatnonzero(corpus) // 8) == {0}
    edges, thresholds = stratified_thresholds(scores, values, 0.25, 4)
    kept = stratified_keep(scores, values, edges, thresholds)
    assert np.bincount(np.flatnonzero(kept) // 8).tolist() == [2, 2, 2, 2]
    for k in range(4):  # the two best of each stratum
        block = scores[8 * k : 8 * k + 8]
        assert set(np.flatnonzero(kept[8 * k : 8 * k + 8])) == set(np.argsort(-block)[:2])
    # One stratum is the corpus-wide rule.
    edges1, thresholds1 = stratified_thresholds(scores, values, 0.25, 1)
    assert thresholds1.tolist() == [top_fraction_threshold(scores, 0.25)]
    assert (stratified_keep(scores, values, edges1, thresholds1) == corpus).all()
    with pytest.raises(ValueError, match="stratum values"):
        stratified_thresholds(scores, values[:-1], 0.25, 4)
