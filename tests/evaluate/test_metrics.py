"""Metrics on hand-computed 4x4 cases, the streaming evaluator and the baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from popdistill.errors import UserError
from popdistill.evaluate import metrics as M
from popdistill.evaluate.baselines import centre_prior, create_baseline, full_mask, list_baselines

# gt: top-left 2x2 block. soft uses multiples of 1/5 so the 8-bit quantisation is exact.
GT = np.zeros((4, 4), bool)
GT[:2, :2] = True
SOFT = np.array(
    [
        [1.0, 0.6, 0.8, 0.0],
        [0.4, 0.8, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.2],
    ],
    np.float32,
)
# At 0.5: predicted {(0,0), (0,1), (0,2), (1,1)} -> TP 3, FP 1, FN 1.
F_BEST = 1.3 * 0.8 / (0.3 * 0.8 + 1.0)  # P 0.8, R 1 for thresholds 52..102 / 255


def test_accuracy_jaccard_mae_hand_values():
    pred = M.binarize(SOFT, 0.5)
    assert M.pixel_accuracy(pred, GT) == pytest.approx(14 / 16)
    assert M.jaccard(pred, GT) == pytest.approx(3 / 5)
    assert M.mae(SOFT, GT) == pytest.approx(2.2 / 16)
    assert M.precision_recall(pred, GT) == pytest.approx((0.75, 0.75))


def test_threshold_changes_binarisation():
    pred = M.binarize(SOFT, 0.7)  # {1.0, 0.8, 0.8}: TP 2, FP 1, FN 2
    assert M.jaccard(pred, GT) == pytest.approx(2 / 5)
    assert M.pixel_accuracy(pred, GT) == pytest.approx(13 / 16)
    assert M.binarize(np.array([0.5]), 0.5)[0]  # soft >= threshold is foreground


def test_precision_recall_curve_hand_values():
    p, r = M.precision_recall_curve(SOFT, GT)
    assert p.shape == r.shape == (256,)
    expected = {  # threshold index k -> (precision, recall)
        0: (4 / 16, 1.0),
        1: (4 / 6, 1.0),
        51: (4 / 6, 1.0),
        52: (0.8, 1.0),
        102: (0.8, 1.0),
        103: (0.75, 0.75),
        153: (0.75, 0.75),
        154: (2 / 3, 0.5),
        204: (2 / 3, 0.5),
        205: (1.0, 0.25),
        255: (1.0, 0.25),
    }
    for k, (pk, rk) in expected.items():
        assert (p[k], r[k]) == pytest.approx((pk, rk)), k


def test_f_beta_formula():
    assert M.f_beta(0.5, 1.0) == pytest.approx(1.3 * 0.5 / 1.15)
    assert M.f_beta(0.0, 0.0) == 0.0
    assert M.f_beta(0.7, 0.7) == pytest.approx(0.7)
    np.testing.assert_allclose(
        M.f_beta(np.array([1.0, 0.0]), np.array([0.25, 0.0])), [1.3 * 0.25 / 0.55, 0]
    )


def test_adaptive_f_measure():
    # mean = 3.8 / 16 -> threshold 0.475 -> same prediction as 0.5: P = R = 0.75
    assert M.adaptive_threshold(SOFT) == pytest.approx(0.475)
    assert M.adaptive_f_measure(SOFT, GT) == pytest.approx(0.75)
    assert M.adaptive_threshold(np.full((2, 2), 0.9)) == 1.0  # clipped to 1
    # all-zero mask: empty prediction
    assert M.adaptive_f_measure(np.zeros((4, 4)), GT) == 0.0
    assert M.adaptive_f_measure(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 1.0


def test_empty_mask_conventions():
    empty = np.zeros((4, 4), bool)
    # both empty
    assert M.jaccard(empty, empty) == 1.0
    assert M.pixel_accuracy(empty, empty) == 1.0
    assert M.precision_recall(empty, empty) == (1.0, 1.0)
    # only the prediction is empty / only the ground truth is empty
    assert M.jaccard(empty, GT) == 0.0
    assert M.jaccard(GT, empty) == 0.0
    assert M.pixel_accuracy(empty, GT) == pytest.approx(12 / 16)
    assert M.precision_recall(empty, GT) == (0.0, 0.0)
    assert M.precision_recall(GT, empty) == (0.0, 0.0)
    # curve with empty gt: threshold 0 predicts everything (P 0, R 0), above it nothing (1, 1)
    p, r = M.precision_recall_curve(np.zeros((4, 4)), empty)
    assert (p[0], r[0]) == (0.0, 0.0)
    assert (p[1:] == 1).all() and (r[1:] == 1).all()


def test_resize_bilinear_half_pixel_centres():
    up = M.resize_mask(np.array([[0, 1], [0, 1]], np.float32), (4, 4))
    np.testing.assert_allclose(up, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    assert up.dtype == np.float32
    down = M.resize_mask(np.full((6, 6), 0.3, np.float32), (2, 3))
    np.testing.assert_allclose(down, 0.3, atol=1e-6)
    same = np.array([[0.2, 1.5]], np.float32)
    np.testing.assert_allclose(M.resize_mask(same, (1, 2)), [[0.2, 1.0]])  # clipped to [0, 1]


def test_corloc_hit_any_box_and_empty_mask():
    soft = np.zeros((8, 8), np.float32)
    soft[4:8, 4:8] = 1.0
    boxes = np.array([[0, 0, 2, 2], [4, 4, 8, 8]], np.float32)
    assert M.corloc_hit(soft, boxes)
    assert not M.corloc_hit(soft, boxes[:1])
    assert not M.corloc_hit(np.zeros((8, 8)), boxes)
    # IoU exactly 0.5 is a hit: predicted [4, 4, 8, 6] vs gt [4, 4, 8, 8]
    half = np.zeros((8, 8), np.float32)
    half[4:6, 4:8] = 1.0
    assert M.corloc_hit(half, boxes[1:])


def test_evaluator_single_frame_matches_hand_values():
    ev = M.Evaluator()
    scores = ev.add("v", SOFT, GT, np.array([[0, 0, 2, 2]], np.float32))
    # predicted box [0, 0, 3, 2] vs gt [0, 0, 2, 2]: IoU 4 / 6 -> hit
    assert scores["J"] == pytest.approx(0.6) and scores["CorLoc"] == 1.0
    o = ev.overall()
    assert o["P"] == pytest.approx(14 / 16)
    assert o["J"] == pytest.approx(0.6)
    assert o["MAE"] == pytest.approx(2.2 / 16)
    assert o["F_adaptive"] == pytest.approx(0.75)
    assert o["F_max"] == pytest.approx(F_BEST)
    assert o["F_max_threshold"] == pytest.approx(52 / 255)
    assert o["CorLoc"] == 1.0
    assert (o["frames"], o["frames_with_boxes"], o["frames_without_gt"]) == (1, 1, 0)
    ev.add("v", SOFT, GT, np.array([[0, 0, 1, 1]], np.float32))  # IoU 1 / 6: miss
    assert ev.overall()["CorLoc"] == 0.5


def test_f_max_from_averaged_curves_not_mean_of_f():
    gt = np.array([[True, False]])
    ev = M.Evaluator()
    ev.add("v", np.array([[1.0, 0.0]]), gt)  # perfect: per-frame F-max 1
    ev.add("v", np.array([[0.0, 1.0]]), gt)  # inverted: per-frame F-max at threshold 0
    # averaged curves: threshold 0 -> P 0.5, R 1; above -> P 0.5, R 0.5
    assert ev.overall()["F_max"] == pytest.approx(1.3 * 0.5 / 1.15)
    assert ev.overall()["F_max_threshold"] == 0.0


def test_evaluator_per_video_overall_and_mean_over_videos():
    ev = M.Evaluator(threshold=0.5)
    ev.add("a", SOFT, GT)  # J 0.6
    ev.add("b", GT.astype(np.float32), GT)  # J 1
    ev.add("b", np.zeros((4, 4)), GT)  # J 0
    ev.add("b", None)  # no ground truth: counted only
    res = ev.results()
    assert res["videos"]["a"]["J"] == pytest.approx(0.6)
    assert res["videos"]["b"]["J"] == pytest.approx(0.5)
    assert res["overall"]["J"] == pytest.approx(1.6 / 3)
    assert res["mean_over_videos"]["J"] == pytest.approx(0.55)
    assert res["overall"]["frames"] == 3 and res["overall"]["frames_without_gt"] == 1
    assert res["overall"]["CorLoc"] is None  # no boxes anywhere
    assert res["overall"]["videos"] == 2


def test_evaluator_resizes_small_masks():
    gt = np.zeros((4, 4), bool)
    gt[:, 2:] = True
    ev = M.Evaluator()
    s = ev.add("v", np.array([[0, 1], [0, 1]], np.float32), gt, np.array([[2, 0, 4, 4]]))
    assert s["J"] == 1.0 and s["P"] == 1.0 and s["CorLoc"] == 1.0
    assert s["MAE"] == pytest.approx(0.125)


def test_boxes_only_frames_need_frame_size():
    ev = M.Evaluator()
    soft = np.zeros((2, 2), np.float32)
    soft[1, 1] = 1.0  # upsampled to 8x8: the bottom-right quarter [4, 4, 8, 8] is >= 0.5
    with pytest.raises(ValueError, match="frame_size"):
        ev.add("v", soft, None, np.array([[4, 4, 8, 8]]))
    assert ev.add("v", soft, None, np.array([[4, 4, 8, 8]]), frame_size=(8, 8))["CorLoc"] == 1.0
    ev.add("v", soft, None, np.zeros((0, 4)))  # annotated with no box: not a CorLoc frame
    o = ev.overall()
    assert (o["frames"], o["frames_with_boxes"], o["frames_without_gt"]) == (0, 1, 1)
    assert o["J"] is None and o["CorLoc"] == 1.0


def test_box_mode_changes_corloc():
    soft = np.zeros((8, 8), np.float32)
    soft[0:3, 0:3] = 1.0
    soft[7, 7] = 1.0
    box = np.array([[0, 0, 3, 3]])
    assert M.Evaluator(box_mode="largest").add("v", soft, None, box, (8, 8))["CorLoc"] == 1.0
    assert M.Evaluator(box_mode="all").add("v", soft, None, box, (8, 8))["CorLoc"] == 0.0


def _random_frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        gt = np.zeros((12, 16), bool)
        y, x = rng.integers(0, 6), rng.integers(0, 8)
        gt[y : y + 6, x : x + 8] = True
        soft = rng.random((6, 8)).astype(np.float32)
        frames.append((f"v{i % 3}", soft, gt, np.array([[x, y, x + 8, y + 6]], np.float32)))
    return frames


def test_merge_equals_single_pass_and_dict_round_trip():
    frames = _random_frames(10)
    single = M.Evaluator()
    for f in frames:
        single.add(*f)
    a, b = M.Evaluator(), M.Evaluator()
    for i, f in enumerate(frames):
        (a if i < 4 else b).add(*f)  # v0..v2 are split across both parts
    b.skip("x.jpg", "no mask for frame")
    restored = M.Evaluator.from_dict(json.loads(json.dumps(b.to_dict())))
    merged = M.Evaluator.from_dict(a.to_dict()).merge(restored)
    r1, r2 = single.results(), merged.results()
    assert r1.keys() == r2.keys()
    for key in ("overall", "mean_over_videos"):
        for name, value in r1[key].items():
            assert r2[key][name] == pytest.approx(value), (key, name)
    for video in r1["videos"]:
        assert r2["videos"][video] == pytest.approx(r1["videos"][video])
    assert [s.reason for s in merged.skipped] == ["no mask for frame"]


def test_merge_rejects_other_config_and_config_is_validated():
    with pytest.raises(ValueError, match="different configs"):
        M.Evaluator().merge(M.Evaluator(threshold=0.3))
    with pytest.raises(UserError, match="threshold"):
        M.Evaluator(threshold=1.5)
    with pytest.raises(UserError, match="box_mode"):
        M.Evaluator(box_mode="biggest")


def test_centre_prior_values():
    c = centre_prior(3, 3)  # sigma = 1
    assert c[1, 1] == 1.0
    assert c[0, 1] == pytest.approx(np.exp(-0.5))
    assert c[0, 0] == pytest.approx(np.exp(-1.0))
    wide = centre_prior(4, 10)  # even sizes: still peak 1, symmetric
    assert wide.shape == (4, 10) and wide.max() == pytest.approx(1.0)
    np.testing.assert_allclose(wide, wide[::-1, ::-1])
    # default sigma 4/3; normalised by the value at the 4 centre pixels (offsets 0.5, 0.5)
    assert wide[0, 0] == pytest.approx(np.exp(-(1.5**2 + 4.5**2 - 0.5) / (2 * (4 / 3) ** 2)))
    assert centre_prior(5, 5, sigma=2.0)[2, 0] == pytest.approx(np.exp(-4 / 8))


def test_full_mask_and_registry():
    np.testing.assert_array_equal(full_mask(2, 3), np.ones((2, 3), np.float32))
    assert list_baselines() == ["centre", "full"]
    assert create_baseline("centre") is centre_prior
    with pytest.raises(UserError, match="centre, full"):
        create_baseline("center")
